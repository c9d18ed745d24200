"""The gate in front of one upstream credential: fair turns between principals, never over the known budget.

State comes from the upstream's own answers: `X-RateLimit-Limit`, `-Remaining` and `-Reset` (every NeuralSnap
answer, errors included), and 429s with `Retry-After`. It lives in the state store (`window.py`; `admit.py` and
`settle.py` decide on it), so every process using the credential shares one budget. The gate

- sends nothing while the known remaining budget is 0 before the reset;
- reserves each send before it leaves, so a burst never overshoots into a 429, whichever processes it comes from;
- until it has seen one answer, lets a single probe out and holds the rest for what it learns;
- after a 429, holds every waiting call until the retry time (the penalty box);
- when the budget runs low and more calls wait than it holds, spreads the last sends over the rest of the window
  instead of bursting (advisory: pacing never makes a call fail);
- fails a call at once when its place in the queue cannot be reached within its wait budget.

A send in flight is reserved for a few seconds at a time and renewed while its request is out, so a process
killed mid-request holds the others up for seconds, not for the request's timeout. Within a process only the
head of the queue asks the store; the others wait for their turn, which `FairQueue` hands out by start-time fair
queuing between principals; the heads' tickets in the shared document are ordered the same way (`admit.py`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

import anyio

from server import context
from server.backoff import full_jitter
from server.clock import Clock
from server.context import HEARTBEAT_EVERY_S, Budget
from server.errors import RateLimited
from server.observe import tracing
from server.observe.metrics import NO_METRICS, Observer
from server.scheduler import burst, scripted
from server.scheduler.admit import (
    TICKET_GRACE_S,
    Asker,
    AwaitAnswers,
    Decision,
    Moved,
    Send,
    Wait,
    may_lift,
    quiet_for,
)
from server.scheduler.buckets import key_part
from server.scheduler.fair import FairQueue
from server.scheduler.settle import Answer
from server.scheduler.window import Window
from server.state.leases import LeaseKeeper
from server.state.memory import MemoryStore
from server.state.store import Announces, Doc, Mutation, Store

FLIGHT_LEASE_S = 6.0  # a send in flight stays reserved this long unless its process renews it
HEARD_POLL_S = 1.0  # with a store that announces changes (Redis): a look now and then, in case one was lost
LOOK_POLL_S = 0.25  # with one that does not (SQLite): other processes' answers are found by looking
# A call told of changes looks again by itself at least this often: before its ticket (which outlives its last look
# by TICKET_GRACE_S) runs out and younger calls of other processes pass it.
QUIET_S = 0.75 * TICKET_GRACE_S


@dataclass(frozen=True)
class GateView:
    """What the gate knows, for check_quota: times in Unix seconds, waits in seconds, counts in requests."""

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
    doc: str = ""  # the window document it was reserved in
    bucket: str | None = None
    in_period: int = 0  # sends in its burst period, itself included
    in_second: int = 0  # of those, the sends in its whole second
    answers_at_send: int = 0  # the window's count of answers when it was let out


@dataclass(eq=False)
class _Lane:
    """The calls of this process waiting for one window document, and what it last said."""

    doc: str
    turns: FairQueue = field(default_factory=FairQueue)
    changed: anyio.Event = field(default_factory=anyio.Event)
    seen: Window = field(default_factory=Window)  # the last state read or written, for estimates
    queued: int = 0
    hold: str | None = None  # why its head waits for a change (AwaitAnswers), while it does
    deciding: bool = False  # its head is asking the store now: any change may be news to it

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def heard(self, said: Doc) -> None:
        """Another process announced a change to the lane's window: wake the head if it may let it go."""
        if self.deciding or self.hold is None or may_lift(self.hold, self.seen, said):
            self.wake()


class Gate(LeaseKeeper):
    """The way out for one credential's requests: each waits its turn, then until the shared window lets it go.

    Decisions are made on window documents in the state store (`admit.decide`, `settle.settle`), so every
    process sharing the credential shares its budgets: one window for the credential, and one more for each
    bucket (method and route) its answers showed to have a budget of its own (`buckets.py`). Enter it
    (`async with`) on a shared store so the reservations of requests in flight are renewed; `flight_lease_s`
    and `flight_ttl_s` are seconds, `pace_below` a fraction of the limit (pace the last sends once the budget
    left falls below it).
    """

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
        self._out: dict[str, str] = {}  # tracked reservations of this process not yet settled -> their document
        self._poll_s = LOOK_POLL_S if self._store.shared else HEARTBEAT_EVERY_S
        self._lanes: dict[str, _Lane] = {self._key: _Lane(self._key)}
        self._separate: set[str] = set()  # buckets with a window of their own, as the shared window last said

    @property
    def _main(self) -> _Lane:
        return self._lanes[self._key]

    @property
    def queued(self) -> int:
        """Calls of this process waiting at the gate, every window together."""
        return sum(lane.queued for lane in self._lanes.values())

    def _lane(self, bucket: str | None) -> _Lane:
        """The lane of a bucket: its own window once shown to have one, else the credential's."""
        if bucket is None or bucket not in self._separate:
            return self._main
        doc = f"{self._key}:{key_part(bucket)}"
        return self._lanes.setdefault(doc, _Lane(doc))

    def _keeps_leases(self) -> bool:
        return self._store.shared

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._renewals is not None and isinstance(self._store, Announces) and self._store.announces:
            self._renewals.start_soon(self._hear_changes, self._store)
        return self

    async def _hear_changes(self, store: Announces) -> None:
        """Wake this process's waiting heads when another process settles an answer on their window."""
        attempt = 0
        while True:
            self._poll_s = HEARD_POLL_S
            try:
                async for key, said in store.changes(self._key):
                    attempt = 0
                    if (lane := self._lanes.get(key)) is not None:
                        lane.heard(said)
            except Exception:
                self._poll_s = LOOK_POLL_S
            attempt += 1
            await anyio.sleep(full_jitter(attempt, cap_s=10.0))

    async def _renew(self) -> None:
        by_doc: dict[str, set[str]] = {}
        for reservation, doc in list(self._out.items()):
            by_doc.setdefault(doc, set()).add(reservation)
        for doc, reservations in by_doc.items():
            with contextlib.suppress(Exception):  # a missed renewal costs at most a lease
                await self._store.update(doc, self._renewer(reservations))

    def _renewer(self, reservations: set[str]) -> Mutation[None]:
        return scripted.renewing(self._clock.now, reservations, self._lease_s)

    def _saw(self, lane: _Lane, window: Window) -> None:
        lane.seen = window
        if lane is self._main:
            self._separate = set(window.separate)

    # --- admission ---------------------------------------------------------------------------

    async def acquire(self, budget: Budget, bucket: str | None = None) -> Reservation:
        """Wait for this call's turn, then until a request may go out, and reserve it.

        Args:
            budget: the call's wait budget.
            bucket: the request's method and route (`buckets.bucket_of`); None counts it in the credential's window.

        Returns:
            The reservation to settle with `answered` or `unanswered` once the request is done.

        Raises:
            RateLimited: the estimated wait, the queue ahead or a hold of the window (a 429's penalty, a spent
                budget) does not fit the call's wait budget.
            StoreUnavailable: the state store failed (a store opened by the runtime falls back to memory instead).
        """
        while True:
            lane = self._lane(bucket)
            reservation = await self._acquire_in(lane, budget, bucket)
            if reservation is not None:
                return reservation  # else its bucket was split off meanwhile: ask in its own lane

    async def _acquire_in(self, lane: _Lane, budget: Budget, bucket: str | None) -> Reservation | None:
        """`acquire` in one lane; None when the bucket moved to a window of its own before it could go.

        Raises:
            RateLimited: as `acquire`.
        """
        ahead = lane.queued
        with tracing.span(
            f"gate wait {self.scope}", {"flashsnap.gate": self.scope, "flashsnap.gate.queued_ahead": ahead}
        ):
            budget.check(lane.seen.estimate(self._clock.now(), ahead), scope=self.scope, why="rate limit")
            arrived, label, reservation = self._clock.now(), context.turn().label, None
            lane.queued += 1
            self._observer.gate_queued(self.scope, self.queued)
            self._observer.principal_turn(label, queued=1)
            try:
                await self._take_turn(lane, budget, ahead)
                try:
                    reservation = await self._wait_at_head(lane, budget, arrived, bucket)
                    return reservation
                finally:
                    lane.turns.release()
            finally:
                waited, lane.queued = self._clock.now() - arrived, lane.queued - 1
                self._observer.gate_queued(self.scope, self.queued)
                self._observer.gate_waited(self.scope, waited)
                self._observer.principal_turn(label, queued=-1, sent=int(reservation is not None), waited_s=waited)
                context.note_turn(sent=reservation is not None, waited_s=waited)

    async def _take_turn(self, lane: _Lane, budget: Budget, ahead: int) -> None:
        """Wait for this process's turn at the head of the lane's queue, `ahead` calls before it.

        Raises:
            RateLimited: the turn did not come within the call's wait budget.
        """
        if lane.turns.try_take():
            return
        ticket = lane.turns.enqueue()
        try:
            # Real time, which is the clock's time in production; a test's fake clock only moves the head.
            with anyio.move_on_after(max(budget.left(), 0.0) + HEARTBEAT_EVERY_S):
                while True:
                    with anyio.move_on_after(HEARTBEAT_EVERY_S):
                        await ticket.granted.wait()
                        return
                    await budget.heartbeat(f"queued behind {lane.queued - 1} calls for {self.scope}")
        except BaseException:
            lane.turns.withdraw(ticket)
            raise
        lane.turns.withdraw(ticket)
        raise RateLimited(
            f"The queue for {self.scope} did not reach this call within its wait budget.",
            scope=self.scope,
            retry_after_s=lane.seen.estimate(self._clock.now(), ahead),
        )

    async def _wait_at_head(
        self, lane: _Lane, budget: Budget, arrived: float, bucket: str | None
    ) -> Reservation | None:
        """At the head of the lane's queue, ask its window until it lets a send out (`arrived`: Unix seconds);
        None when the window says the bucket has one of its own now."""
        me = secrets.token_hex(8)
        turn = context.turn()  # whom it waits as: its principal's place in the shared queue (fair queuing)
        paced = False
        heartbeat_at = anyio.current_time() + HEARTBEAT_EVERY_S
        try:
            while True:
                own = lane is not self._main
                inherited = tuple(burst.recent_sends(self._main.seen, self._clock.now(), bucket)) if own else ()
                asker = Asker(me, arrived, self._probe_first, paced, lane.queued - 1, self._flight_ttl_s,
                              self._pace_below, own_window=own, bucket=bucket or "", inherited=inherited,
                              principal=turn.key, weight=turn.weight)  # fmt: skip
                changed = lane.changed  # a change announced while the store decides is not missed
                lane.deciding, lane.hold = True, None
                try:
                    decision, window = await self._store.update(lane.doc, self._decider(asker))
                finally:
                    lane.deciding = False
                self._saw(lane, window)
                if isinstance(decision, Moved):
                    return None
                if isinstance(decision, Send):
                    self._observer.rate_limit(self.scope, window.limit, window.remaining)
                    if decision.tracked:
                        self._out[me] = lane.doc
                    return Reservation(me, decision.tracked, lane.doc, bucket, decision.in_period, decision.in_second,
                                       window.answers)  # fmt: skip
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
                lane.hold = decision.why
                try:
                    await self._await_change(lane, changed, budget, decision.why)
                finally:
                    lane.hold = None
                if anyio.current_time() >= heartbeat_at:
                    await budget.heartbeat(f"{decision.why} ({self.scope})")
                    heartbeat_at = anyio.current_time() + HEARTBEAT_EVERY_S
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0), contextlib.suppress(Exception):
                await self._store.update(lane.doc, scripted.forgetting(self._clock.now, me))
            raise

    def _decider(self, asker: Asker) -> Mutation[tuple[Decision, Window]]:
        return scripted.deciding(self._clock.now, asker)

    async def _await_change(self, lane: _Lane, event: anyio.Event, budget: Budget, why: str) -> None:
        """Wait for an answer here or one announced from elsewhere (`event`), or a moment to look again; give up
        when the budget is gone.

        Raises:
            RateLimited: the call's wait budget is spent; `why` says what it waited for.
        """
        wait_s = self._poll_s
        if wait_s == HEARD_POLL_S:  # told of every change that may free it: look only when time itself may
            wait_s = max(wait_s, min(QUIET_S, quiet_for(why, lane.seen, self._clock.now())))
        with anyio.move_on_after(min(wait_s, budget.left())):
            await event.wait()
            return
        if budget.left() <= 0:
            estimate = lane.seen.estimate(self._clock.now(), 0)
            raise RateLimited(f"{why}.", scope=self.scope, retry_after_s=estimate or HEARTBEAT_EVERY_S)

    # --- what the upstream said --------------------------------------------------------------

    async def answered(
        self,
        reservation: Reservation,
        headers: Mapping[str, str],
        *,
        status: int | None = None,
        throttled_for: float | None = None,
    ) -> None:
        """Learn from an answer: its rate-limit headers and, for a rate-limit 429, how long to hold the queue.

        Args:
            reservation: what `acquire` returned for the request answered.
            headers: the answer's headers (`X-RateLimit-Limit`, `-Remaining`, `-Reset` in Unix seconds).
            status: the answer's HTTP status (a 429 with room left in the window is a burst).
            throttled_for: for a rate-limit 429, seconds to hold every call of the window.

        Raises:
            StoreUnavailable: the state store failed (a store opened by the runtime falls back to memory instead).
        """
        await self._settle(
            reservation,
            Answer.from_headers(
                reservation.id, reservation.tracked, headers, throttled_for=throttled_for, status=status,
                bucket=reservation.bucket, in_period=reservation.in_period, in_second=reservation.in_second,
                answers_at_send=reservation.answers_at_send,
            ),
        )  # fmt: skip

    async def unanswered(self, reservation: Reservation, *, sent: bool) -> None:
        """A request got no answer; if it never left (`sent=False`), its place in the budget is given back.

        Raises:
            StoreUnavailable: the state store failed (a store opened by the runtime falls back to memory instead).
        """
        await self._settle(reservation, Answer(reservation.id, reservation.tracked, answered=False, sent=sent))

    async def _settle(self, reservation: Reservation, answer: Answer) -> None:
        self._out.pop(answer.reservation, None)
        lane = self._lanes.get(reservation.doc) or self._main
        learn = scripted.settling(self._clock.now, answer)
        if answer.informative:  # an untracked send with no rate-limit headers has nothing to settle
            # Shielded: a cancelled call must still give back what it reserved.
            with anyio.CancelScope(shield=True):
                self._saw(lane, await self._store.update(lane.doc, learn))
            self._observer.rate_limit(self.scope, lane.seen.limit, lane.seen.remaining)
        lane.wake()

    async def seed(self, limit: int) -> None:
        """Start the credential's window from `limit` (requests per window) when no answer told one yet.

        Raises:
            StoreUnavailable: the state store failed (a store opened by the runtime falls back to memory instead).
        """
        self._saw(self._main, await self._store.update(self._key, scripted.seeding(self._clock.now, limit)))

    # --- estimates ---------------------------------------------------------------------------

    @property
    def longest_window_s(self) -> float | None:
        """The longest rate-limit window seen (seconds; None before one was), to tell a spent quota's 429."""
        return max((lane.seen.window_s for lane in self._lanes.values() if lane.seen.window_s), default=None)

    def estimate(self, ahead: int) -> float:
        """Seconds until a call with `ahead` calls before it could go out, from what was last seen (no store read)."""
        return self._main.seen.estimate(self._clock.now(), ahead)

    async def view(self) -> GateView:
        """What the gate knows now of the credential's window, read afresh from the state store.

        Raises:
            StoreUnavailable: the state store failed (a store opened by the runtime falls back to memory instead).
        """
        now = self._clock.now()
        self._saw(self._main, Window.load(await self._store.get(self._key), now))
        w = self._main.seen
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
