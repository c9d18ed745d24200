"""How a tool module describes itself to the app factory: its function, name and annotations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

from server.runtime import Runtime

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=True)
CREATES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=True)

ToolContext = Context[Runtime, Any]

MaxWait = Annotated[
    float | None,
    Field(
        ge=0,
        le=3600,
        description="How many seconds this call may wait for a rate limit or a free slot before it fails "
        "with retry_after_s (default: the server's FLASHSNAP_MAX_WAIT_S, 30 s).",
    ),
]

WorkspaceId = Annotated[
    str | None,
    Field(
        description="neuroflash workspace id (see list_workspaces); leave it out for the default workspace.",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_-]+$",
    ),
]


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    name: str
    title: str
    annotations: ToolAnnotations


def runtime(ctx: ToolContext) -> Runtime:
    """The shared state the lifespan opened, as a tool sees it."""
    return ctx.request_context.lifespan_context
