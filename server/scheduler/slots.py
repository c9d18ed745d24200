"""Places that at most `limit` holders use at once, across every process sharing the state store.

Generation streams per workspace use it: a place is a lease in a shared document, renewed while
held by one background loop per process, so a process that dies frees its places within
`lease_s` seconds. A call waits for a place within its wait budget, with heartbeats.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import anyio

from server.clock import Clock
from server.context import HEARTBEAT_EVERY_S, Budget
from server.errors import RateLimited
from server.observe.metrics import NO_METRICS, Observer
from server.state.leases import POLL_S, LeaseKeeper
from server.state.memory import MemoryStore
from server.state.store import Change, Doc, Mutation, Store


def holders(doc: Doc | None, now: float) -> dict[str, float]:
    """The live holders of a slots document at `now`: holder -> lease end, both in Unix seconds."""
    holders = (doc or {}).get("holders")
    if not isinstance(holders, dict):
        return {}
    return {str(k): float(v) for k, v in holders.items() if isinstance(v, int | float) and v > now}


class Slots(LeaseKeeper):
    """At most `limit` holders at once per name, across every process sharing the state store.

    A place is a lease of `lease_s` seconds, renewed while held when the slots are entered (`async with`);
    names are keys of their own (`{key}:{name}`), such as one per workspace.
    """

    def __init__(
        self, clock: Clock, limit: int, *, store: Store | None = None, key: str = "slots", lease_s: float = 9.0,
        observer: Observer = NO_METRICS,
    ) -> None:  # fmt: skip
        self._clock = clock
        self._observer = observer
        self.limit = limit
        self._store: Store = store or MemoryStore(clock)
        self._key = key
        self._lease_s = lease_s
        self._poll_s = POLL_S if self._store.shared else HEARTBEAT_EVERY_S
        self._mine: dict[str, str] = {}  # holder -> document key, for renewal
        self._freed = anyio.Event()

    async def in_use(self, name: str) -> int:
        """How many places of `name` are held now.

        Raises:
            StoreUnavailable: the state store failed (a store opened by the runtime falls back to memory instead).
        """
        return len(holders(await self._store.get(f"{self._key}:{name}"), self._clock.now()))

    @contextlib.asynccontextmanager
    async def hold(self, name: str, budget: Budget, *, scope: str) -> AsyncIterator[None]:
        """Hold one of the places of `name`, waiting for one no longer than the budget allows.

        Args:
            name: what the places are counted for (a workspace).
            budget: the call's wait budget; heartbeats go out every few seconds while waiting.
            scope: what to name in a heartbeat or an error (the upstream and workspace).

        Raises:
            RateLimited: every place stayed busy for as long as the call may wait.
            StoreUnavailable: the state store failed (a store opened by the runtime falls back to memory instead).
        """
        key, me = f"{self._key}:{name}", secrets.token_hex(8)
        acquired = False
        heartbeat_at = anyio.current_time() + HEARTBEAT_EVERY_S
        # Real time, which is the clock's time in production; waiting here is for other calls to finish.
        with anyio.move_on_after(budget.left()):
            while not (acquired := await self._store.update(key, self._taker(me))):
                freed = self._freed
                with anyio.move_on_after(self._poll_s):
                    await freed.wait()
                if anyio.current_time() >= heartbeat_at:
                    await budget.heartbeat(f"waiting for one of {self.limit} places for {scope}")
                    heartbeat_at = anyio.current_time() + HEARTBEAT_EVERY_S
        if not acquired:
            raise RateLimited(
                f"All {self.limit} places for {scope} stayed busy for as long as this call may wait.",
                scope=scope,
                retry_after_s=HEARTBEAT_EVERY_S,
            )
        self._mine[me] = key
        self._observer.slots_in_use(name, 1)
        try:
            yield
        finally:
            del self._mine[me]
            self._observer.slots_in_use(name, -1)
            with anyio.CancelScope(shield=True):
                await self._store.update(key, self._giver(me))
            self._freed.set()
            self._freed = anyio.Event()

    def _taker(self, me: str) -> Mutation[bool]:
        def take(doc: Doc | None) -> Change[bool]:
            now = self._clock.now()
            held = holders(doc, now)
            if len(held) >= self.limit:
                return Change(False)
            held[me] = now + self._lease_s
            return Change(True, {"holders": held}, self._lease_s)

        return take

    def _giver(self, me: str) -> Mutation[None]:
        def give(doc: Doc | None) -> Change[None]:
            held = holders(doc, self._clock.now())
            held.pop(me, None)
            return Change(None, {"holders": held} if held else None, self._lease_s)

        return give

    async def _renew(self) -> None:
        for me, key in list(self._mine.items()):
            await self._store.update(key, self._renewer(me))

    def _renewer(self, me: str) -> Mutation[None]:
        def renew(doc: Doc | None) -> Change[None]:
            now = self._clock.now()
            held = holders(doc, now)
            if me not in held and len(held) >= self.limit:
                # Our lease ran out (a long stall) and the place was taken meanwhile: never hold one
                # more than the limit; the stream goes on and its end gives back nothing.
                return Change(None)
            held[me] = now + self._lease_s
            return Change(None, {"holders": held}, self._lease_s)

        return renew
