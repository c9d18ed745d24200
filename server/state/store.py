"""The one small interface every state backend offers: read a document, or change it atomically.

A document is a JSON object under a key. `update` hands the current document (or None) to a
pure function and writes what it returns in one atomic step: a transaction in SQLite, a
compare-and-set script in Redis, a plain call in memory. A mutation that is also a script (`Scripted`)
runs inside Redis in one round trip instead, and announces its change to every process (`Announces`).
The function may run more than once (an optimistic backend retries on contention), so it must not
have side effects. It may keep the document as it is (`KEEP`), which costs no write: the common
path of an unconstrained gate reads and moves on.

Every document expires (`ttl_s`), so nothing outlives its use: a token is kept no longer than it
is valid, a lease of a process that died runs out by itself.

Documents are wrapped with the schema version they were written in; a document of another
version reads as absent, never as something it is not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable

Doc = dict[str, Any]
R = TypeVar("R")

SCHEMA: Final = 1  # bump when a document's shape changes; old documents then read as absent
DEFAULT_TTL_S: Final = 86_400.0


class StoreUnavailable(Exception):
    """The store could not be reached or used. The message names where, never a secret."""


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


@dataclass(frozen=True)
class Change(Generic[R]):
    """What an update decided: its result, and the new document (None deletes; KEEP writes nothing)."""

    result: R
    doc: Doc | _Keep | None = KEEP
    ttl_s: float = DEFAULT_TTL_S


Mutation = Callable[[Doc | None], Change[R]]


@dataclass(frozen=True)
class Scripted(Generic[R]):
    """A mutation a store may run inside itself as a script: one round trip, one atomic step, no retries.

    `pure` is the mutation itself (what a store without scripts runs); `script` the same rules in Lua, run on
    the document under `step` with `args()`: the time now (Unix seconds) and the step's arguments, taken at
    the moment it runs. `read` turns the script's answer (its result and the document after it) into `pure`'s
    result. Tests hold the two to the same answers.
    """

    pure: Mutation[R]
    script: str
    step: str
    args: Callable[[], tuple[float, Doc]]
    read: Callable[[Any, Doc, float], R]
    ttl_s: float = DEFAULT_TTL_S

    def __call__(self, doc: Doc | None) -> Change[R]:
        return self.pure(doc)


@runtime_checkable
class Announces(Protocol):
    """A store that tells every process when a scripted write may let a waiting call go (Redis pub/sub)."""

    announces: bool  # False: it never will (a fallback over a store that does not)

    def changes(self, prefix: str) -> AsyncIterator[tuple[str, Doc]]:
        """Each key starting with `prefix` as its script announces a change, with what the script said of it
        (an empty document when it said nothing readable), for as long as it is iterated.

        Raises:
            StoreUnavailable: the store failed (the caller listens again later).
        """
        ...


class Store(Protocol):
    """A place for documents that every process using it sees."""

    kind: str  # "memory", "sqlite" or "redis"
    shared: bool  # whether other processes see the same documents

    @property
    def degraded(self) -> bool:
        """Running on process-local state because the shared store failed."""

    @property
    def problem(self) -> str | None:
        """What failed, when something did."""

    async def get(self, key: str) -> Doc | None: ...

    async def update(self, key: str, mutate: Mutation[R]) -> R: ...

    async def keys(self, prefix: str) -> list[str]:
        """The keys of live documents that start with `prefix`, sorted (for the status view, not for hot paths)."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers now."""

    def describe(self) -> str:
        """Where the state lives, for logs and /healthz (a path or host; never a password)."""

    async def aclose(self) -> None: ...


def encode(doc: Doc) -> str:
    return json.dumps({"v": SCHEMA, "d": doc}, separators=(",", ":"), allow_nan=False)


def decode(raw: str | bytes | None) -> Doc | None:
    """A stored document, or None when absent, unreadable or written by another schema version."""
    if raw is None:
        return None
    try:
        wrapped = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(wrapped, dict) or wrapped.get("v") != SCHEMA or not isinstance(wrapped.get("d"), dict):
        return None
    doc: Doc = wrapped["d"]
    return doc
