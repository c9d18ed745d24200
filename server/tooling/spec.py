"""How a tool module declares itself, once: its function (whose name it takes), title, toolset, annotations,
purpose line for the instructions, and what a call costs. The app factory, the instructions and the tests read it."""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Annotated, Any, TypeVar

import pydantic_core
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from server.auth import scopes
from server.runtime import Runtime
from server.segments import ID_PATTERN, MAX_ID, UUID_PATTERN

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
        max_length=MAX_ID,
        pattern=ID_PATTERN,  # the rule every path that carries it checks again (server/segments.py)
    ),
]


SnapshotId = Annotated[
    str,
    Field(
        min_length=36,
        max_length=36,
        # NeuralSnap's ids are UUIDs: anything else (a route name such as "search", a path) never reaches it.
        pattern=UUID_PATTERN,
        description="The snapshot's id (a UUID).",
    ),
]

BrainId = Annotated[
    str | None,
    Field(
        min_length=36,
        max_length=36,
        pattern=UUID_PATTERN,
        description="Which of the user's brains (a UUID); leave it out for the default brain.",
    ),
]


class Cost(enum.Enum):
    """What a call costs the user: the one field the instructions (and later scopes and budgets) read.

    Annotations say whether a call changes anything, not what: `snapshot` and `generate` both create, but one
    writes a thought and the other spends words.
    """

    NOTHING = "nothing"  # reads, from no allowance
    SEARCHES = "searches"  # the NeuralSnap plan's monthly searches (docs/upstream-contract.md)
    WRITES = "writes"  # writes data the user keeps (snapshot, update_snapshot)
    WORDS = "words"  # spends neuroflash words from a workspace's quota
    CRYSTALLIZE = "crystallize"  # spends the NeuralSnap plan's monthly crystallize tokens
    DESTROYS = "destroys"  # removes data for good (delete_snapshot)


# A call that reads, whatever allowance it counts against; a read-only server offers only these.
READS = frozenset({Cost.NOTHING, Cost.SEARCHES})
# What a second call adds again (data or spending). A repeated search only reads, and a repeated deletion finds
# nothing left (the user is asked before every one), so neither is in the instructions' never-repeat list.
ADDS = frozenset({Cost.WRITES, Cost.WORDS, Cost.CRYSTALLIZE})
# The scope a caller needs for a call of each cost: a search counts against the plan's monthly searches, so it
# spends, though it changes nothing.
SCOPE_OF = {
    Cost.NOTHING: scopes.READ,
    Cost.SEARCHES: scopes.SPEND,
    Cost.WRITES: scopes.WRITE,
    Cost.DESTROYS: scopes.WRITE,
    Cost.WORDS: scopes.SPEND,
    Cost.CRYSTALLIZE: scopes.SPEND,
}


@dataclass(frozen=True)
class ToolSpec:
    """One tool, declared once in its module as `TOOL`, and listed in `tools.ALL`."""

    fn: Callable[..., Awaitable[Any]]
    _: KW_ONLY
    title: str
    toolset: str
    annotations: ToolAnnotations
    cost: Cost
    purpose: str  # what it is for, in the instructions' list of tools (after "name: ")
    changes: tuple[str, ...] = ()  # see CHANGE_KINDS
    # Whose text its results carry, when others wrote it ("saved snapshots"): labelled as data, never instructions,
    # in each result and in its description (server/tooling/trust.py).
    quotes: str = ""

    def __post_init__(self) -> None:
        assert self.toolset in TOOLSETS, self.toolset
        assert set(self.changes) <= set(CHANGE_KINDS), self.changes
        assert self.read_only == (self.cost in READS), f"{self.name}: its annotations and its cost disagree"
        assert (self.cost is Cost.DESTROYS) <= bool(self.annotations.destructive_hint), self.name

    @property
    def name(self) -> str:
        """The tool's name: its function's."""
        return self.fn.__name__

    @property
    def read_only(self) -> bool:
        """Whether the tool changes nothing (offered under --read-only)."""
        return bool(self.annotations.read_only_hint)

    @property
    def purpose_line(self) -> str:
        """The tool's line in the instructions' list of the tools that are on."""
        return f"{self.name}: {self.purpose}"

    @property
    def never_repeat(self) -> bool:
        """A second call after an unclear failure may create or spend again: the instructions say check first."""
        return self.cost in ADDS and not self.annotations.idempotent_hint

    @property
    def scope(self) -> str:
        """The scope a caller's token and policy must hold to call this tool (`server/auth/scopes.py`)."""
        return SCOPE_OF[self.cost]


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
