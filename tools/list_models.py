"""list_models: the language models a workspace can generate with."""

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from server.tooling.spec import READ_ONLY, Cost, ToolContext, ToolSpec, WorkspaceId, runtime


class ModelItem(BaseModel):
    id: str = Field(description="Pass this as model to generate.")
    name: str
    provider: str
    context_window: int | None = Field(description="Tokens the model reads at most (prompt and answer).")
    available: bool = Field(description="Whether the workspace's plan includes the model.")
    reasoning_model: bool = Field(description="Reasoning models accept reasoning_effort.")


class ModelList(BaseModel):
    workspace_id: str
    models: list[ModelItem]


async def list_models(
    ctx: ToolContext,
    workspace_id: WorkspaceId = None,
    provider: Annotated[
        Literal["openai", "anthropic", "google", "mistral"] | None,
        Field(description="Only models of this provider."),
    ] = None,
    include_unavailable: Annotated[
        bool,
        Field(description="Also list models the workspace's plan does not include (they cannot be used)."),
    ] = False,
) -> ModelList:
    """List the language models a neuroflash workspace can generate text with.

    Call it before generate to pick a model id. By default only models on the
    workspace's plan are listed; a model that is not cannot be used.
    """
    workspace_id, models = await runtime(ctx).neuroflash().list_models(workspace_id)
    return ModelList(
        workspace_id=workspace_id,
        models=[
            ModelItem.model_validate(m.model_dump())
            for m in models
            if (include_unavailable or m.available) and provider in (None, m.provider)
        ],
    )


TOOL = ToolSpec(
    list_models,
    title="List neuroflash models",
    toolset="neuroflash",
    annotations=READ_ONLY,
    cost=Cost.NOTHING,
    purpose="the model ids a workspace can write with.",
)
