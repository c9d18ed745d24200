"""A shared store that degrades to process-local state while it fails, and comes back when it answers.

Calls never fail because the store did: while it is down they go on with state of this process
only (one warning, not one per call), and every few seconds one call tries the shared store
again. What was kept locally meanwhile is dropped on return: the shared store is the truth, and
the gates relearn from the next answers' headers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio

from server.clock import Clock
from server.state.memory import MemoryStore
from server.state.store import Announces, Doc, Mutation, R, Store, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


class FallbackStore:
    def __init__(self, shared: Store, clock: Clock, *, retry_every_s: float = 5.0) -> None:
        self.primary = shared
        self.kind = shared.kind
        self.shared = shared.shared
        self.announces = isinstance(shared, Announces) and shared.announces
        self._clock = clock
        self._retry_every_s = retry_every_s
        self._local = MemoryStore(clock)
        self._down_since: float | None = None
        self._tried_at = 0.0
        self._probing = False  # a call is trying the shared store again while degraded
        self.problem: str | None = None

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    async def get(self, key: str) -> Doc | None:
        return await self._either(lambda store: store.get(key))

    async def update(self, key: str, mutate: Mutation[R]) -> R:
        return await self._either(lambda store: store.update(key, mutate))

    async def keys(self, prefix: str) -> list[str]:
        return await self._either(lambda store: store.keys(prefix))

    async def ping(self) -> None:
        await self.primary.ping()

    async def changes(self, prefix: str) -> AsyncIterator[tuple[str, Doc]]:
        """The shared store's announcements (`Announces`), if it makes any; else none, ever.

        Raises:
            StoreUnavailable: the shared store failed.
        """
        if not isinstance(self.primary, Announces):
            await anyio.sleep_forever()
            return
        async for change in self.primary.changes(prefix):
            yield change

    def describe(self) -> str:
        return self.primary.describe()

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self._local.aclose()

    async def _either(self, op: Callable[[Store], Awaitable[T]]) -> T:
        if self._down_since is not None and (self._probing or self._clock.now() - self._tried_at < self._retry_every_s):
            return await op(self._local)  # one call at a time finds out whether the store is back
        self._probing = self._down_since is not None
        try:
            result = await op(self.primary)
        except StoreUnavailable as exc:
            # Measured from the failure, not the attempt: a try that waited out a lock must not
            # make the next call wait again at once.
            self._tried_at = self._clock.now()
            if self._down_since is None:
                self._down_since = self._tried_at
                self.problem = str(exc)
                log.warning("shared state unavailable, going on with this process's own state: %s", exc)
            return await op(self._local)
        finally:
            self._probing = False
        if self._down_since is not None:
            log.warning("shared state is back (%s); process-local state dropped", self.primary.describe())
            self._down_since = None
            self.problem = None
            self._local = MemoryStore(self._clock)
        return result
