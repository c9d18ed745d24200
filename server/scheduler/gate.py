"""The gate in front of one upstream credential: first come, first served, never over the known budget.

State comes from the upstream's own answers: `X-RateLimit-Limit`, `-Remaining` and `-Reset`
(every NeuralSnap answer, errors included), and 429s with `Retry-After`. It lives in the state
store (`window.py` holds the decisions), so every process using the credential shares one budget.
The gate

- sends nothing while the known remaining budget is 0 before the reset;
- reserves each send before it leaves, so a burst never overshoots into a 429, whichever
  processes it comes from;
- until it has seen one answer, lets a single probe out and holds the rest for what it learns;
- after a 429, holds every waiting call until the retry time (the penalty box);
- when the budget runs low and more calls wait than it holds, spreads the last sends over the
  rest of the window instead of bursting (advisory: pacing never makes a call fail);
- fails a call at once when its place in the queue cannot be reached within its wait budget.

A send in flight is reserved for a few seconds at a time and renewed while its request is out, so
a process killed mid-request holds the others up for seconds, not for the request's timeout.

Within a process only the head of the queue asks the store; the others wait for their turn,
which `FairQueue` hands out round-robin between sessions. Between processes, waiting calls go
roughly in arrival order (tickets in the shared document).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from server.clock import Clock
from server.errors import RateLimited
from server.observe import tracing
from server.observe.metrics import NO_METRICS, Observer
from server.scheduler.budget import HEARTBEAT_EVERY_S, Budget
from server.scheduler.fair import FairQueue
from server.scheduler.window import (
    Answer,
    Asker,
    AwaitAnswers,
    Decision,
    Send,
    Wait,
    Window,
    decide,
    forget_ticket,
    renew_flights,
    settle,
)
from server.state.leases import POLL_S, LeaseKeeper
from server.state.memory import MemoryStore
from server.state.store import Change, Doc, Mutation, Store

FLIGHT_LEASE_S = 6.0  # a send in flight stays reserved this long unless its process renews it


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


@dataclass(frozen=True)
class Reservation:
    """A send the gate let out; settle it with `answered` or `unanswered`."""

    id: str
    tracked: bool


class Gate(LeaseKeeper):
    def __init__(
        self,
        scope: str,
        clock: Clock,
        *,
        store: Store | None = None,
        key: str | None = None,
        probe_first: bool = True,
        pace_below: float = 0.1,
        flight_ttl_s: float = 120.0,
        flight_lease_s: float = FLIGHT_LEASE_S,
        observer: Observer = NO_METRICS,
    ) -> None:
        self.scope = scope
        self._observer = observer
        self._clock = clock
        self._store: Store = store or MemoryStore(clock)
        self._key = key or f"gate:{scope}"
        self._probe_first = probe_first
        self._pace_below = pace_below
        # On a shared store a reservation is a short lease renewed while the request is out; in
        # memory nobody else can be held up by a dead process, so it simply lasts the request.
        self._lease_s = flight_lease_s
        self._flight_ttl_s = flight_lease_s if self._store.shared else flight_ttl_s
        self._out: set[str] = set()  # tracked reservations of this process not yet settled
        self._poll_s = POLL_S if self._store.shared else HEARTBEAT_EVERY_S
        self._turns = FairQueue()
        self._changed = anyio.Event()
        self._seen = Window()  # the last state read or written, for estimates
        self.queued = 0

    def _keeps_leases(self) -> bool:
        return self._store.shared

    async def _renew(self) -> None:
        if self._out:
            with contextlib.suppress(Exception):  # a missed renewal costs at most a lease
                await self._store.update(self._key, self._renewer(set(self._out)))

    def _renewer(self, reservations: set[str]) -> Mutation[None]:
        def renew(doc: Doc | None) -> Change[None]:
            now = self._clock.now()
            return renew_flights(doc, now, reservations, now + self._lease_s)

        return renew

    # --- admission ---------------------------------------------------------------------------

    async def acquire(self, budget: Budget) -> Reservation:
        """Wait for this call's turn, then until a request may go out, and reserve it."""
        ahead = self.queued
        with tracing.span(
            f"gate wait {self.scope}", {"flashsnap.gate": self.scope, "flashsnap.gate.queued_ahead": ahead}
        ):
            budget.check(self.estimate(ahead), scope=self.scope, why="rate limit")
            arrived = self._clock.now()
            self.queued += 1
            self._observer.gate_queued(self.scope, self.queued)
            try:
                await self._take_turn(budget, ahead)
                try:
                    return await self._wait_at_head(budget, arrived)
                finally:
                    self._turns.release()
            finally:
                self.queued -= 1
                self._observer.gate_queued(self.scope, self.queued)
                self._observer.gate_waited(self.scope, self._clock.now() - arrived)

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

    async def _wait_at_head(self, budget: Budget, arrived: float) -> Reservation:
        me = secrets.token_hex(8)
        paced = False
        heartbeat_at = anyio.current_time() + HEARTBEAT_EVERY_S
        try:
            while True:
                asker = Asker(me, arrived, self._probe_first, paced, self.queued - 1, self._flight_ttl_s,
                              self._pace_below)  # fmt: skip
                decision, self._seen = await self._store.update(self._key, self._decider(asker))
                if isinstance(decision, Send):
                    self._observer.rate_limit(self.scope, self._seen.limit, self._seen.remaining)
                    if decision.tracked:
                        self._out.add(me)
                    return Reservation(me, decision.tracked)
                if isinstance(decision, Wait):
                    seconds = decision.seconds
                    if decision.advisory:
                        # Never longer than the budget allows; then look again, since a 429 or a
                        # spent budget may have arrived meanwhile.
                        seconds, paced = min(seconds, budget.left()), True
                    await budget.wait(seconds, scope=self.scope, why=decision.why)
                    heartbeat_at = anyio.current_time() + HEARTBEAT_EVERY_S
                    continue
                assert isinstance(decision, AwaitAnswers)
                await self._await_change(budget, decision.why)
                if anyio.current_time() >= heartbeat_at:
                    await budget.heartbeat(f"{decision.why} ({self.scope})")
                    heartbeat_at = anyio.current_time() + HEARTBEAT_EVERY_S
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0), contextlib.suppress(Exception):
                await self._store.update(self._key, lambda doc: forget_ticket(doc, self._clock.now(), me))
            raise

    def _decider(self, asker: Asker) -> Mutation[tuple[Decision, Window]]:
        return lambda doc: decide(doc, self._clock.now(), asker)

    async def _await_change(self, budget: Budget, why: str) -> None:
        """Wait for an answer here, or a moment for one elsewhere; give up when the budget is gone.

        Raises:
            RateLimited: the call's wait budget ran out.
        """
        event = self._changed
        with anyio.move_on_after(min(self._poll_s, budget.left())):
            await event.wait()
            return
        if budget.left() <= 0:
            raise RateLimited(f"{why}.", scope=self.scope, retry_after_s=self.estimate(0) or HEARTBEAT_EVERY_S)

    # --- what the upstream said --------------------------------------------------------------

    async def answered(
        self, reservation: Reservation, headers: Mapping[str, str], *, throttled_for: float | None = None
    ) -> None:
        """Learn from an answer: its rate-limit headers and, for a rate-limit 429, how long to hold the queue."""
        await self._settle(
            Answer.from_headers(reservation.id, reservation.tracked, headers, throttled_for=throttled_for)
        )

    async def unanswered(self, reservation: Reservation, *, sent: bool) -> None:
        """A request got no answer; if it never left, its place in the budget is given back."""
        await self._settle(Answer(reservation.id, reservation.tracked, answered=False, sent=sent))

    async def _settle(self, answer: Answer) -> None:
        self._out.discard(answer.reservation)

        def learn(doc: Doc | None) -> Change[Window]:
            return settle(doc, self._clock.now(), answer)

        if answer.informative:  # an untracked send with no rate-limit headers has nothing to settle
            # Shielded: a cancelled call must still give back what it reserved.
            with anyio.CancelScope(shield=True):
                self._seen = await self._store.update(self._key, learn)
            self._observer.rate_limit(self.scope, self._seen.limit, self._seen.remaining)
        self._changed.set()
        self._changed = anyio.Event()

    # --- estimates ---------------------------------------------------------------------------

    def estimate(self, ahead: int) -> float:
        """Seconds until a call with `ahead` calls before it could go out, from what was last seen."""
        return self._seen.estimate(self._clock.now(), ahead)

    async def view(self) -> GateView:
        now = self._clock.now()
        self._seen = Window.load(await self._store.get(self._key), now)
        w = self._seen
        queued = self.queued + len(w.waiting)
        return GateView(
            scope=self.scope,
            limit=w.limit,
            remaining=w.remaining,
            resets_at=w.reset_at,
            blocked_until=w.blocked_until if w.blocked_until > now else None,
            queued=queued,
            in_flight=w.in_flight,
            estimated_wait_s=w.estimate(now, queued),
        )
