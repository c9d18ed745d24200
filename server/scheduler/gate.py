"""The gate in front of one upstream credential: first come, first served, never over the known budget.

State comes from the upstream's own answers: `X-RateLimit-Limit`, `-Remaining` and `-Reset`
(every NeuralSnap answer, errors included), and 429s with `Retry-After`. The gate

- sends nothing while the known remaining budget is 0 before the reset;
- counts its own sends against the budget, so a burst never overshoots into a 429;
- until it has seen one answer, lets a single probe out and holds the rest for what it learns;
- after a 429, holds the whole queue until the retry time (the penalty box);
- when the budget runs low and more calls wait than it holds, spreads the last sends over the
  rest of the window instead of bursting (advisory: pacing never makes a call fail);
- fails a call at once when its place in the queue cannot be reached within its wait budget.

Only the head of the queue sleeps; the others wait for their turn, which `FairQueue` hands out
round-robin between sessions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from server.clock import Clock
from server.errors import RateLimited
from server.scheduler.budget import HEARTBEAT_EVERY_S, Budget
from server.scheduler.fair import FairQueue


@dataclass(frozen=True)
class GateView:
    """What the gate knows, for check_quota."""

    scope: str
    limit: int | None
    remaining: int | None
    resets_at: float | None
    blocked_until: float | None
    queued: int
    in_flight: int
    estimated_wait_s: float


class Gate:
    def __init__(self, scope: str, clock: Clock, *, probe_first: bool = True, pace_below: float = 0.1) -> None:
        self.scope = scope
        self._clock = clock
        self._probe_first = probe_first
        self._pace_below = pace_below
        self._turns = FairQueue()
        self._changed = anyio.Event()
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.blocked_until = 0.0
        self.window_s: float | None = None
        self.in_flight = 0
        self.queued = 0
        self.answered = 0
        self._last_send = -math.inf

    # --- admission ---------------------------------------------------------------------------

    async def acquire(self, budget: Budget) -> None:
        """Wait for this call's turn, then until a request may go out, and count it as sent."""
        ahead = self.queued
        budget.check(self.estimate(ahead), scope=self.scope, why="rate limit")
        self.queued += 1
        try:
            await self._take_turn(budget, ahead)
            try:
                await self._wait_at_head(budget)
            finally:
                self._turns.release()
        finally:
            self.queued -= 1

    async def _take_turn(self, budget: Budget, ahead: int) -> None:
        if self._turns.try_take():
            return
        ticket = self._turns.enqueue()
        try:
            # Real time, which is the clock's time in production; a test's fake clock only moves the head.
            with anyio.move_on_after(max(budget.left(), 0.0) + HEARTBEAT_EVERY_S):
                while True:
                    with anyio.move_on_after(HEARTBEAT_EVERY_S):
                        await ticket.granted.wait()
                        return
                    await budget.heartbeat(f"queued behind {self.queued - 1} calls for {self.scope}")
        except BaseException:
            self._turns.withdraw(ticket)
            raise
        self._turns.withdraw(ticket)
        raise RateLimited(
            f"The queue for {self.scope} did not reach this call within its wait budget.",
            scope=self.scope,
            retry_after_s=self.estimate(ahead),
        )

    async def _wait_at_head(self, budget: Budget) -> None:
        paced = False
        while True:
            now = self._clock.now()
            blocked = self.blocked_until > now
            spent = (
                self.remaining is not None and self.remaining <= 0 and (self.reset_at is None or now < self.reset_at)
            )
            # Until an answer has named the limit, one probe at a time (a few header-less answers end it).
            learning = self._probe_first and self.limit is None and self.answered < PROBE_ANSWERS
            if (blocked or spent or learning) and self.in_flight > 0:
                # Let the requests already out be answered first: what they say may change the wait.
                await self._await_answer(budget, "waiting for answers to requests already sent")
                continue
            if blocked:
                await budget.wait(self.blocked_until - now, scope=self.scope, why="rate limited by the upstream")
                continue
            if spent and self.reset_at is not None:
                await budget.wait(self.reset_at - now, scope=self.scope, why="rate limit budget spent")
                continue
            if self.reset_at is not None and now >= self.reset_at:
                # The window is over: a fresh one starts with our next send.
                self.remaining, self.reset_at = self.limit, None
            pace = 0.0 if paced else min(self._pace(now), budget.left())
            if pace > 0:
                # Advisory: never longer than the budget allows; then look again, since a 429 or a
                # spent budget may have arrived meanwhile.
                await budget.wait(pace, scope=self.scope, why="pacing the last requests of the window")
                paced = True
                continue
            self._send()
            return

    def _pace(self, now: float) -> float:
        if self.limit is None or self.remaining is None or self.reset_at is None:
            return 0.0
        if self.remaining > self._pace_below * self.limit or self.queued <= self.remaining:
            return 0.0
        # Spread over the window's time left, less a tenth of the window as a margin, in remaining + 1
        # intervals: the last paced send lands well before the reset, never slipping into the next window.
        margin = 0.1 * (self.window_s or (self.reset_at - now))
        interval = max(0.0, self.reset_at - now - margin) / (self.remaining + 1)
        return max(0.0, self._last_send + interval - now)

    async def _await_answer(self, budget: Budget, why: str) -> None:
        """Wait for the next answer; heartbeat every few seconds; give up when the budget is gone."""
        event = self._changed
        with anyio.move_on_after(min(HEARTBEAT_EVERY_S, budget.left())):
            await event.wait()
            return
        if budget.left() <= 0:
            raise RateLimited(f"{why}.", scope=self.scope, retry_after_s=self.estimate(0) or HEARTBEAT_EVERY_S)
        await budget.heartbeat(f"{why} ({self.scope})")

    def _send(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1
        self.in_flight += 1
        self._last_send = self._clock.now()

    # --- what the upstream said --------------------------------------------------------------

    def answered_with(self, headers: Mapping[str, str], *, throttled_for: float | None = None) -> None:
        """Learn from an answer: its rate-limit headers and, for a rate-limit 429, how long to hold the queue."""
        self.in_flight -= 1
        self.answered += 1
        now = self._clock.now()
        limit, remaining, reset = (_int(headers.get(h)) for h in _HEADERS)
        if limit is not None:
            self.limit = limit
        # An answer from a window that is already over says nothing about the current one.
        if remaining is not None and reset is not None and reset > now:
            others = self.in_flight  # sent before this answer, maybe not counted in it yet
            if self.reset_at is None or reset > self.reset_at + 0.5:
                if self.reset_at is None and self.window_s is None:
                    self.window_s = max(1.0, reset - now)
                self.reset_at = float(reset)
                self.remaining = max(0, remaining - others)
            else:
                self.remaining = min(self.remaining if self.remaining is not None else remaining, remaining)
        if throttled_for is not None:
            self.blocked_until = max(self.blocked_until, now + throttled_for)
        self._notify()

    def unanswered(self, *, sent: bool) -> None:
        """A request got no answer; if it never left, its place in the budget is given back."""
        self.in_flight -= 1
        if not sent and self.remaining is not None:
            self.remaining += 1
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # --- estimates ---------------------------------------------------------------------------

    def estimate(self, ahead: int) -> float:
        """Seconds until a call with `ahead` calls before it could go out, from what is known."""
        now = self._clock.now()
        hard = max(0.0, self.blocked_until - now)
        if self.remaining is None or self.reset_at is None or self.limit is None:
            return hard
        if ahead < self.remaining:
            return hard
        until_reset = max(0.0, self.reset_at - now)
        extra_windows = (ahead - self.remaining) // max(1, self.limit)
        return max(hard, until_reset + extra_windows * (self.window_s or until_reset))

    def view(self) -> GateView:
        return GateView(
            scope=self.scope,
            limit=self.limit,
            remaining=self.remaining,
            resets_at=self.reset_at,
            blocked_until=self.blocked_until if self.blocked_until > self._clock.now() else None,
            queued=self.queued,
            in_flight=self.in_flight,
            estimated_wait_s=self.estimate(self.queued),
        )


PROBE_ANSWERS = 3
_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
