"""list_workspaces: the neuroflash workspaces the service account can use."""

from pydantic import BaseModel, Field

from server.tooling.spec import READ_ONLY, Cost, MaxWait, ToolContext, ToolSpec, runtime


class WorkspaceItem(BaseModel):
    id: str = Field(description="Pass this as workspace_id to the other neuroflash tools.")
    name: str
    is_default: bool = Field(description="True for the workspace used when a tool is called without one.")


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceItem]
    default_workspace_id: str | None = Field(
        description="The workspace used when workspace_id is left out; null when it must be given."
    )


async def list_workspaces(ctx: ToolContext, max_wait_s: MaxWait = None) -> WorkspaceList:
    """List the neuroflash workspaces this server's service account can use, with their ids.

    Call it when the user mentions a workspace by name, or when another tool says
    workspace_id is required. The default workspace is marked; tools use it when
    workspace_id is left out.
    """
    workspaces, default = await runtime(ctx).neuroflash().list_workspaces()
    return WorkspaceList(
        workspaces=[WorkspaceItem(id=w.id, name=w.name, is_default=w.id == default) for w in workspaces],
        default_workspace_id=default,
    )


TOOL = ToolSpec(
    list_workspaces,
    title="List neuroflash workspaces",
    toolset="neuroflash",
    annotations=READ_ONLY,
    cost=Cost.NOTHING,
    purpose="the neuroflash workspaces and their ids (the default one is marked).",
)
