"""list_brand_voices: the brand voices of a neuroflash workspace, for generate's brand_voice_id."""

from pydantic import BaseModel, Field

from server.neuroflash.wire import BrandVoice
from server.tooling.spec import READ_ONLY, Cost, MaxWait, ToolContext, ToolSpec, WorkspaceId, fit, runtime


class BrandVoiceList(BaseModel):
    workspace_id: str
    brand_voices: list[BrandVoice] = Field(description="Pass an id as generate's brand_voice_id.")
    truncated: bool = Field(default=False, description="True when voices were cut to fit the result size.")


async def list_brand_voices(
    ctx: ToolContext, workspace_id: WorkspaceId = None, max_wait_s: MaxWait = None
) -> BrandVoiceList:
    """List the workspace's brand voices: how its texts should sound. Use an id with generate."""
    workspace_id, voices = await runtime(ctx).neuroflash().list_brand_voices(workspace_id)

    def keep(n: int) -> BrandVoiceList:
        return BrandVoiceList(workspace_id=workspace_id, brand_voices=voices[:n], truncated=n < len(voices))

    return fit(ctx, len(voices), keep)


TOOL = ToolSpec(
    list_brand_voices,
    title="List neuroflash brand voices",
    toolset="brand",
    annotations=READ_ONLY,
    cost=Cost.NOTHING,
    purpose="the brand voices (how texts should sound), with their ids.",
    quotes="brand voice texts",
)
