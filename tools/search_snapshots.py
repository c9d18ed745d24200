"""search_snapshots: find saved NeuralSnap snapshots by meaning."""

from typing import Annotated

from pydantic import BaseModel, Field

from server.neuralsnap.wire import SearchHit
from server.tooling import spending
from server.tooling.spec import READ_ONLY, BrainId, Cost, MaxWait, ToolContext, ToolSpec, fit, runtime


class SearchResult(BaseModel):
    query: str
    count: int
    snapshots: list[SearchHit] = Field(description="Best match first; similarity runs from 0 to 1.")
    truncated: bool = Field(default=False, description="True when matches were cut to fit the result size.")
    cut_ids: list[str] = Field(default_factory=list, description="Ids of the matches cut: read them with get_snapshot.")


async def search_snapshots(
    ctx: ToolContext,
    query: Annotated[str, Field(min_length=1, max_length=500, description="What to look for, in plain words.")],
    limit: Annotated[int, Field(ge=1, le=100, description="How many snapshots to return at most.")] = 10,
    brain_id: BrainId = None,
    max_wait_s: MaxWait = None,
) -> SearchResult:
    """Search the user's NeuralSnap second brain for saved snapshots, best match first.

    Use it to find a thought saved before, or to check that one exists before saving
    it again. A result too big for the client is cut (truncated true): the ids cut
    are listed for get_snapshot.

    Raises:
        BudgetExhausted: the caller's own monthly searches (team file) are spent.
        FlashsnapError: what the NeuralSnap service raises.
    """
    async with spending.held(ctx, TOOL.cost, 1) as spend:  # one of the plan's monthly searches
        hits = await runtime(ctx).neuralsnap().search(query, limit, brain_id)
        spend.settle(1)

    def keep(n: int) -> SearchResult:
        cut = [hit.id for hit in hits[n:]]
        return SearchResult(query=query, count=len(hits), snapshots=hits[:n], truncated=bool(cut), cut_ids=cut)

    return fit(ctx, len(hits), keep)


TOOL = ToolSpec(
    search_snapshots,
    title="Search NeuralSnap snapshots",
    toolset="neuralsnap",
    annotations=READ_ONLY,
    cost=Cost.SEARCHES,
    purpose="find saved snapshots by meaning.",
    quotes="saved snapshots",
)
