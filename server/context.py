"""The values of the tool call running now, each behind its getter; the tool wrapper (`tooling.calls`) writes them.

The SDK keeps who is calling in one context variable with one getter (`auth_context`); this module does the same
for what a tool call carries down to the floors that spend it without threading it through every signature: the
scheduler its wait budget and its turn, the upstream readers its request ids. Only this module declares a
`ContextVar` (the emulator aside; an import contract in pyproject.toml holds that), and only `server.tooling.calls`
enters `calling` and `serving` (tests/test_layout.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import principal_components

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
    """How long one tool call may still wait: until `deadline` (Unix seconds on `clock`).

    A wait that fits is taken, with a progress notification every few seconds so the client's timeout keeps
    resetting; a wait that does not fit fails at once with `RateLimited`, carrying `{reason, retry_after_s, scope}`.
    """

    clock: Clock
    deadline: float
    report: Report = _silent  # progress to the client: (value or None for "one more step", message)

    async def heartbeat(self, message: str) -> None:
        """Tell the client the call is still waiting, and why (a progress notification)."""
        await self.report(None, message)

    def left(self) -> float:
        """Seconds this call may still wait (0 once the deadline passed)."""
        return max(0.0, self.deadline - self.clock.now())

    def check(self, wait_s: float, *, scope: str, why: str) -> None:
        """Raise at once when a wait of `wait_s` seconds would outlast the budget.

        Raises:
            RateLimited: `wait_s` is longer than the seconds left; `retry_after_s` is `wait_s`.
        """
        if wait_s > self.left() + 1e-9:
            raise RateLimited(
                f"{why}: the next request to {scope} can go out in {wait_s:.0f} s, "
                f"longer than this call may wait ({self.left():.0f} s).",
                scope=scope,
                retry_after_s=wait_s,
            )

    async def wait(self, wait_s: float, *, scope: str, why: str) -> None:
        """Wait `wait_s` seconds (after `check`), sending a heartbeat at the start and every few seconds.

        Raises:
            RateLimited: `wait_s` is longer than the seconds left (nothing is waited then).
        """
        self.check(wait_s, scope=scope, why=why)
        end = self.clock.now() + wait_s
        while (left := end - self.clock.now()) > 0:
            await self.heartbeat(f"{why}; waiting {left:.0f} s for {scope}")
            step = min(left, HEARTBEAT_EVERY_S)
            await self.clock.sleep(step)
            _note_wait(step)


@dataclass(eq=False)
class Running:
    """A tool call under way: the scope a shutdown cancels, and what its cut-off answer needs to say."""

    scope: anyio.CancelScope
    request_ids: list[str] = field(default_factory=list)  # the upstream request ids it met, newest last
    asking: bool = False  # waiting for the user's answer to a question, before anything is sent
    account: str | None = None  # the account key of the first service it used (for its audit record)
    waited_s: float = 0.0  # seconds it waited for a rate limit or a retry (for its audit record)
    sent: int = 0  # upstream requests the gates let out for it (for its principal's counts in status)
    turn_waited_s: float = 0.0  # seconds it waited at the gates for its turn, queue and window (the same)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the SDK names a bearer token's principal: its client, issuer and subject."""

    client_id: str
    issuer: str | None = None
    subject: str | None = None
    name: str | None = None  # what the team file calls it (server/auth/callers.py settles it once per request)
    account: str | None = None  # the team file's upstream account it is routed to; None: the default account


@dataclass(frozen=True)
class Turn:
    """Whom a call waits its turn as at a shared gate (server/tooling/turns.py settles it; fair queuing reads it).

    `key` is the principal as every process and replica names it (a team entry's name; one MCP session; the
    process), `label` its bounded name for metrics and status, `weight` its share against a weight-1 principal's.
    """

    key: str
    label: str
    weight: float = 1.0


ANYONE = Turn("anyone", "anonymous")  # outside a call, and every call that names no principal nor session


@dataclass(frozen=True)
class _Values:
    running: Running | None = None
    budget: Budget | None = None
    turn: Turn = ANYONE


_OUTSIDE = _Values()  # outside a tool call: no budget to wait in, one shared turn
# Replaced, never changed in place, so a value set for a call is seen by the tasks it starts and gone after it.
_call: ContextVar[_Values | None] = ContextVar("flashsnap_call", default=None)


def _values() -> _Values:
    return _call.get() or _OUTSIDE


def running() -> Running | None:
    """The tool call running now; None outside one."""
    return _values().running


def wait_budget(clock: Clock) -> Budget:
    """The running call's wait budget; outside a tool call, a budget of zero wait."""
    return _values().budget or Budget(clock, deadline=clock.now())


def turn() -> Turn:
    """Whom the running call takes its turn as (`Turn`); outside a tool call, `ANYONE`."""
    return _values().turn


def request_ids() -> list[str]:
    """The upstream request ids the running call has met, newest last (empty outside a tool call)."""
    call = _values().running
    return list(call.request_ids) if call is not None else []


def note_request_id(rid: str) -> None:
    """Note an upstream request id for the running call, so its cut-off answer can name the request it was in."""
    call = _values().running
    if call is not None and (not call.request_ids or call.request_ids[-1] != rid):
        call.request_ids.append(rid)


def note_account(account: str) -> None:
    """Note the account key of a service the running call uses (the first one is the call's account)."""
    call = _values().running
    if call is not None and call.account is None:
        call.account = account


def _note_wait(seconds: float) -> None:
    call = _values().running
    if call is not None:
        call.waited_s += seconds


def note_turn(*, sent: bool, waited_s: float) -> None:
    """Note one passage of the running call through a gate: let out or not, after `waited_s` seconds."""
    call = _values().running
    if call is not None:
        call.sent += int(sent)
        call.turn_waited_s += max(0.0, waited_s)


def principal() -> Principal | None:
    """The caller's identity where the SDK authenticated one (its `get_access_token()`), else None.

    Read from the SDK's own context variable, its one home, rather than copied into a second: None over stdio
    and behind this server's shared bearer token (transports/security.py), which names nobody.
    """
    token = get_access_token()
    if token is None:
        return None
    named = getattr(token, "principal", None)  # a settled caller names its principal; a bare token does not
    account = getattr(token, "account", None)  # and the account the team file routes it to
    return Principal(
        *principal_components(token),
        name=named if isinstance(named, str) else None,
        account=account if isinstance(account, str) else None,
    )


@contextmanager
def calling(call: Running) -> Iterator[None]:
    """The code inside this block runs as `call` (for `server.tooling.calls` alone)."""
    token = _call.set(replace(_values(), running=call))
    try:
        yield
    finally:
        _call.reset(token)


@contextmanager
def serving(turn: Turn, budget: Budget | None = None) -> Iterator[None]:
    """The code inside this block waits its turn as `turn`, within `budget` (for `server.tooling.calls` alone)."""
    token = _call.set(replace(_values(), turn=turn, budget=budget))
    try:
        yield
    finally:
        _call.reset(token)
