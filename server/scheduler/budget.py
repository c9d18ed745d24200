"""The wait budget of one tool call: how long it may wait, and the heartbeats it sends meanwhile.

A tool call sets its budget in a context variable; the scheduler, deep below in the HTTP
transport, reads it. A wait that fits is taken, with a progress notification every few
seconds so the client's timeout keeps resetting; a wait that does not fit fails at once
with `RateLimited`, carrying `{reason, retry_after_s, scope}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from server.clock import Clock
from server.errors import RateLimited

Report = Callable[[float | None, str], Awaitable[None]]
# Clients whose timeout a progress notification resets (TypeScript SDK clients, Claude Desktop) commonly
# time out after 10 s or more; a beat every 2.5 s keeps two or more inside any such window.
HEARTBEAT_EVERY_S = 2.5


async def _silent(progress: float | None, message: str) -> None:
    return None


@dataclass
class Budget:
    clock: Clock
    deadline: float
    report: Report = _silent  # progress to the client: (value or None for "one more step", message)

    async def heartbeat(self, message: str) -> None:
        await self.report(None, message)

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock.now())

    def check(self, wait_s: float, *, scope: str, why: str) -> None:
        """Raise at once when a wait of `wait_s` seconds would outlast the budget.

        Raises:
            RateLimited: the wait would outlast the budget; `retry_after_s` says when to call again.
        """
        if wait_s > self.left() + 1e-9:
            raise RateLimited(
                f"{why}: the next request to {scope} can go out in {wait_s:.0f} s, "
                f"longer than this call may wait ({self.left():.0f} s).",
                scope=scope,
                retry_after_s=wait_s,
            )

    async def wait(self, wait_s: float, *, scope: str, why: str) -> None:
        """Wait `wait_s` (after `check`), sending a heartbeat at the start and every few seconds."""
        self.check(wait_s, scope=scope, why=why)
        end = self.clock.now() + wait_s
        while (left := end - self.clock.now()) > 0:
            await self.heartbeat(f"{why}; waiting {left:.0f} s for {scope}")
            step = min(left, HEARTBEAT_EVERY_S)
            await self.clock.sleep(step)


_current: ContextVar[Budget | None] = ContextVar("flashsnap_budget", default=None)


def current(clock: Clock) -> Budget:
    """The running call's budget; outside a tool call, a budget of zero wait."""
    return _current.get() or Budget(clock, deadline=clock.now())


@contextmanager
def budget(clock: Clock, max_wait_s: float, report: Report = _silent) -> Iterator[Budget]:
    """Give the code inside this block a wait budget of `max_wait_s` seconds."""
    given = Budget(clock, clock.now() + max_wait_s, report)
    token = _current.set(given)
    try:
        yield given
    finally:
        _current.reset(token)
