"""get_snapshot: one saved NeuralSnap snapshot, by id."""

from typing import Annotated

from pydantic import Field

from server.toolspec import READ_ONLY, MaxWait, ToolContext, ToolSpec, runtime
from server.upstream.neuralsnap import Snapshot


async def get_snapshot(
    ctx: ToolContext,
    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="The snapshot's id, as snapshot or search_snapshots returned it.",
        ),
    ],
    max_wait_s: MaxWait = None,
) -> Snapshot:
    """Fetch one snapshot from the user's NeuralSnap second brain by its id, with all its fields."""
    return await runtime(ctx).neuralsnap().get(id)


TOOL = ToolSpec(get_snapshot, "get_snapshot", "Get a NeuralSnap snapshot", READ_ONLY)
