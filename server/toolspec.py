"""How a tool module describes itself to the app factory: its function, name and annotations."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import pydantic_core
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from server.runtime import Runtime

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=True)
CREATES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=True)
# Changes what is there: the same call again changes nothing more (update_snapshot).
OVERWRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=True)
# Removes what is there (delete_snapshot); a second call finds nothing to remove, so it is not idempotent here.
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=True)

# The toolsets, in the order they are listed; `default` and `all` are keywords over them.
TOOLSETS = ("neuroflash", "brand", "twins", "neuralsnap", "neuralsnap-write")
DEFAULT_TOOLSETS = ("neuroflash", "brand", "neuralsnap")

# What a tool's success can change that clients are told of: "resources" is what resources/list shows
# (the snapshot listing). The app factory sends the notices; the tool itself knows nothing of them.
CHANGE_KINDS = ("resources",)

ToolContext = Context[Runtime, Any]

MaxWait = Annotated[
    float | None,
    Field(
        ge=0,
        le=3600,
        description="Seconds to wait at most for a rate limit or a free slot (default: the server's, 30 s).",
    ),
]

Confirm = Annotated[
    bool | None,
    Field(
        description=(
            "Only after a confirmation_required result, once the user agreed to what it described: true. "
            "Ignored when this client can ask the user itself."
        )
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


SnapshotId = Annotated[
    str,
    Field(
        min_length=36,
        max_length=36,
        # NeuralSnap's ids are UUIDs: anything else (a route name such as "search", a path) never reaches it.
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="The snapshot's id (a UUID).",
    ),
]

BrainId = Annotated[
    str | None,
    Field(
        min_length=36,
        max_length=36,
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="Which of the user's brains (a UUID); leave it out for the default brain.",
    ),
]


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    name: str
    title: str
    annotations: ToolAnnotations
    toolset: str
    changes: tuple[str, ...] = ()  # see CHANGE_KINDS

    def __post_init__(self) -> None:
        assert self.toolset in TOOLSETS, self.toolset
        assert set(self.changes) <= set(CHANGE_KINDS), self.changes


def runtime(ctx: ToolContext) -> Runtime:
    """The shared state the lifespan opened, as a tool sees it."""
    return ctx.request_context.lifespan_context


ResultT = TypeVar("ResultT", bound=BaseModel)


def received_bytes(result: BaseModel) -> int:
    """What a client receives of a result: its content text (the result as indented JSON, sent as a JSON
    string) and its structured content (the result as JSON)."""
    text = pydantic_core.to_json(result, indent=2).decode()
    return len(json.dumps(text, ensure_ascii=False).encode()) + len(pydantic_core.to_json(result))


def fit(ctx: ToolContext, total: int, build: Callable[[int], ResultT]) -> ResultT:
    """The result that keeps the most of `total` items, `build(n)` keeping the first n, within the result budget
    (FLASHSNAP_MAX_RESULT_TOKENS at 4 bytes a token). `build` says what was cut and how to get it."""
    budget = runtime(ctx).settings.max_result_tokens * 4
    whole = build(total)
    if received_bytes(whole) <= budget:
        return whole
    low, high = 0, total - 1  # the most items that fit lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if received_bytes(build(middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    return build(low)
