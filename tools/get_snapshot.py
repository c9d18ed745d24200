"""get_snapshot: one saved NeuralSnap snapshot, by id."""

from server.neuralsnap.wire import Snapshot
from server.tooling.spec import READ_ONLY, Cost, MaxWait, SnapshotId, ToolContext, ToolSpec, runtime


async def get_snapshot(
    ctx: ToolContext,
    id: SnapshotId,
    max_wait_s: MaxWait = None,
) -> Snapshot:
    """Fetch one snapshot from the user's NeuralSnap second brain by its id, with all its fields."""
    return await runtime(ctx).neuralsnap().get(id)


TOOL = ToolSpec(
    get_snapshot,
    title="Get a NeuralSnap snapshot",
    toolset="neuralsnap",
    annotations=READ_ONLY,
    cost=Cost.NOTHING,
    purpose="one saved thought by its id, with all its fields.",
    quotes="a saved snapshot",
)
