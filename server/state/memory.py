"""State in this process only: today's behaviour, for tests and for users who want nothing on disk."""

from __future__ import annotations

from server.clock import Clock
from server.state.store import KEEP, Doc, Mutation, R, decode, encode


class MemoryStore:
    kind = "memory"
    shared = False

    def __init__(self, clock: Clock, *, problem: str | None = None) -> None:
        self._clock = clock
        self.problem = problem  # set when this is a fallback for a state directory that failed
        self.degraded = problem is not None
        self._docs: dict[str, tuple[str, float]] = {}  # key -> (encoded document, expires at)

    async def get(self, key: str) -> Doc | None:
        return self._read(key)

    async def update(self, key: str, mutate: Mutation[R]) -> R:
        # No await between read and write: atomic on the event loop.
        change = mutate(self._read(key))
        if change.doc is None:
            self._docs.pop(key, None)
        elif change.doc is not KEEP:
            assert isinstance(change.doc, dict)
            self._docs[key] = (encode(change.doc), self._clock.now() + change.ttl_s)
        return change.result

    async def keys(self, prefix: str) -> list[str]:
        now = self._clock.now()
        return sorted(k for k, (_, expires_at) in self._docs.items() if k.startswith(prefix) and expires_at > now)

    def _read(self, key: str) -> Doc | None:
        entry = self._docs.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock.now():
            del self._docs[key]
            return None
        return decode(entry[0])

    async def ping(self) -> None:
        return None

    def describe(self) -> str:
        return "this process's memory"

    async def aclose(self) -> None:
        self._docs.clear()
