"""get_snapshot: one saved NeuralSnap snapshot, by id."""

from typing import Annotated

from pydantic import Field

from server.neuralsnap.wire import Snapshot
from server.toolspec import READ_ONLY, MaxWait, ToolContext, ToolSpec, runtime


async def get_snapshot(
    ctx: ToolContext,
    id: Annotated[
        str,
        Field(
            min_length=36,
            max_length=36,
            # NeuralSnap's ids are UUIDs: anything else (a route name such as "search", a path) never reaches it.
            pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            description="The snapshot's id (a UUID), as snapshot or search_snapshots returned it.",
        ),
    ],
    max_wait_s: MaxWait = None,
) -> Snapshot:
    """Fetch one snapshot from the user's NeuralSnap second brain by its id, with all its fields."""
    return await runtime(ctx).neuralsnap().get(id)


TOOL = ToolSpec(get_snapshot, "get_snapshot", "Get a NeuralSnap snapshot", READ_ONLY)
