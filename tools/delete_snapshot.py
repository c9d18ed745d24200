"""delete_snapshot: remove one snapshot from the user's NeuralSnap brain."""

from pydantic import BaseModel

from server.toolspec import DESTRUCTIVE, MaxWait, SnapshotId, ToolContext, ToolSpec, runtime


class Deleted(BaseModel):
    id: str
    deleted: bool


async def delete_snapshot(ctx: ToolContext, id: SnapshotId, max_wait_s: MaxWait = None) -> Deleted:
    """Delete one snapshot from the user's NeuralSnap brain, for good. Ask the user first."""
    await runtime(ctx).neuralsnap().delete(id)
    return Deleted(id=id, deleted=True)


TOOL = ToolSpec(
    delete_snapshot,
    "delete_snapshot",
    "Delete a NeuralSnap snapshot",
    DESTRUCTIVE,
    "neuralsnap-write",
    changes=("resources",),
)
