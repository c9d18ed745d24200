"""search_snapshots: find saved NeuralSnap snapshots by meaning."""

from typing import Annotated

from pydantic import BaseModel, Field

from server.neuralsnap.wire import SearchHit
from server.toolspec import READ_ONLY, MaxWait, ToolContext, ToolSpec, runtime


class SearchResult(BaseModel):
    query: str
    count: int
    snapshots: list[SearchHit] = Field(description="Best match first; similarity runs from 0 to 1.")


async def search_snapshots(
    ctx: ToolContext,
    query: Annotated[str, Field(min_length=1, max_length=500, description="What to look for, in plain words.")],
    limit: Annotated[int, Field(ge=1, le=100, description="How many snapshots to return at most.")] = 10,
    max_wait_s: MaxWait = None,
) -> SearchResult:
    """Search the user's NeuralSnap second brain for saved snapshots, best match first.

    Use it to find a thought the user saved before, or to check whether a snapshot
    already exists before saving it again. Use get_snapshot for one snapshot by id.
    """
    hits = await runtime(ctx).neuralsnap().search(query, limit)
    return SearchResult(query=query, count=len(hits), snapshots=hits)


TOOL = ToolSpec(search_snapshots, "search_snapshots", "Search NeuralSnap snapshots", READ_ONLY)
