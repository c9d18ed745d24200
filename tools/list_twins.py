"""list_twins: neuroflash's digital-twin groups, or the twins of one group."""

from typing import Annotated

from pydantic import BaseModel, Field

from server.neuroflash.wire import Twin, TwinGroup
from server.segments import KEY_PATTERN, MAX_ID
from server.tooling.spec import READ_ONLY, Cost, MaxWait, ToolContext, ToolSpec, WorkspaceId, fit, runtime


class TwinList(BaseModel):
    groups: list[TwinGroup] = Field(description="Without group: the groups; pass a key as group.")
    twins: list[Twin] = Field(description="With group: its twins; pass ids to ask_twins.")
    truncated: bool = Field(default=False, description="True when entries were cut to fit the result size.")


async def list_twins(
    ctx: ToolContext,
    group: Annotated[
        str | None, Field(min_length=1, max_length=MAX_ID, pattern=KEY_PATTERN, description="A group key.")
    ] = None,
    workspace_id: WorkspaceId = None,
    max_wait_s: MaxWait = None,
) -> TwinList:
    """List neuroflash's digital-twin groups (audiences), or with group the twins in it."""
    groups, twins = await runtime(ctx).neuroflash().list_twins(workspace_id, group)

    def keep(n: int) -> TwinList:
        shown = groups[:n] if groups else []
        return TwinList(groups=shown, twins=twins[:n], truncated=n < max(len(groups), len(twins)))

    return fit(ctx, max(len(groups), len(twins)), keep)


TOOL = ToolSpec(
    list_twins,
    title="List neuroflash digital twins",
    toolset="twins",
    annotations=READ_ONLY,
    cost=Cost.NOTHING,
    purpose="the digital-twin audiences, and the twins in one.",
    quotes="twin and group names",
)
