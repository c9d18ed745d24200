"""Leases kept alive in the background: what a process holds in the shared store stays held while it lives.

A lease is judged by every process sharing the store, so it is renewed on real time, every third
of its length; a process that dies stops renewing, and its leases run out by themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import NoReturn, Self

import anyio
from anyio.abc import TaskGroup

POLL_S = 0.05  # how often a call waiting on other processes looks at the shared store again


class LeaseKeeper:
    """While entered, runs `_renew()` every third of `_lease_s` (if `_keeps_leases()`)."""

    _lease_s: float
    _renewals: TaskGroup | None = None

    def _keeps_leases(self) -> bool:
        return True

    async def _renew(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self._keeps_leases():
            self._renewals = anyio.create_task_group()
            await self._renewals.__aenter__()
            self._renewals.start_soon(self._renew_forever)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._renewals is not None:
            self._renewals.cancel_scope.cancel()
            await self._renewals.__aexit__(exc_type, exc, tb)
            self._renewals = None

    async def _renew_forever(self) -> None:
        await renew_every(self._lease_s, self._renew)


async def renew_every(lease_s: float, renew: Callable[[], Awaitable[None]]) -> NoReturn:
    """Run `renew()` every third of `lease_s` seconds, until cancelled.

    Real time, not the injected clock: a lease is judged by other processes' clocks too.
    """
    while True:
        await anyio.sleep(lease_s / 3)
        await renew()
