"""list_snapshots: page through the user's NeuralSnap snapshots, newest first."""

from typing import Annotated

from pydantic import BaseModel, Field

from server.neuralsnap.wire import Snapshot
from server.tooling.spec import READ_ONLY, BrainId, Cost, MaxWait, ToolContext, ToolSpec, fit, runtime


class SnapshotPage(BaseModel):
    snapshots: list[Snapshot] = Field(description="Newest first.")
    offset: int
    total: int | None = Field(description="How many snapshots the brain holds; null when NeuralSnap did not say.")
    next_offset: int | None = Field(description="Pass as offset for the next page; null at the end.")
    truncated: bool = Field(default=False, description="True when the page was cut to fit the result size.")


async def list_snapshots(
    ctx: ToolContext,
    limit: Annotated[int, Field(ge=1, le=100, description="Snapshots per page.")] = 20,
    offset: Annotated[int, Field(ge=0, le=1_000_000, description="How many to skip (next_offset of a page).")] = 0,
    brain_id: BrainId = None,
    max_wait_s: MaxWait = None,
) -> SnapshotPage:
    """Page through the user's saved NeuralSnap snapshots, newest first.

    Use it to review or tidy what is saved; search_snapshots finds by meaning.
    """
    snapshots, total = await runtime(ctx).neuralsnap().recent(limit, offset, brain_id)
    more = len(snapshots) == limit and (total is None or offset + limit < total)

    def keep(n: int) -> SnapshotPage:
        cut = n < len(snapshots)
        after = offset + n if cut or more else None
        return SnapshotPage(snapshots=snapshots[:n], offset=offset, total=total, next_offset=after, truncated=cut)

    return fit(ctx, len(snapshots), keep)


TOOL = ToolSpec(
    list_snapshots,
    title="List NeuralSnap snapshots",
    toolset="neuralsnap-write",
    annotations=READ_ONLY,
    cost=Cost.NOTHING,
    purpose="page through saved snapshots, newest first.",
    quotes="saved snapshots",
)
