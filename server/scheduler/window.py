"""The rate-limit state of one credential as a shared document, and the pure decisions made on it.

Every process that uses the credential reads and changes this one document through the state
store, each decision in one atomic update: "may this request go now?" reserves a send before it
leaves (so N processes together never send more than the budget left), and "what did the answer
say?" settles it from the rate-limit headers. A reservation of a process that dies expires.

Waiting calls of all processes leave a ticket with their arrival time; a send is granted only
while the budget left covers every older ticket, so calls go roughly in arrival order whichever
process holds them. Tickets expire too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.httpio import MAX_WINDOW_S, RATE_LIMIT_HEADERS, plausible_rate_limit
from server.scheduler import burst
from server.scheduler.buckets import Report, latest, shows_own_budget
from server.state.store import Change, Doc

PROBE_ANSWERS = 3  # header-less answers after which the gate stops probing one request at a time
TICKET_GRACE_S = 2.0  # a waiting call's ticket outlives its next look at the gate by this much
WINDOW_TTL_S = 86_400.0


@dataclass
class Window:
    """One credential's rate-limit window as every process sees it; times are Unix seconds."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    blocked_until: float = 0.0
    window_s: float | None = None
    answered: int = 0
    sent: int = 0  # sends counted against the current window (or, before the first reset is known, ever)
    last_send: float = -math.inf
    flights: dict[str, float] = field(default_factory=dict)  # reservation -> expires at
    waiting: dict[str, tuple[float, float]] = field(default_factory=dict)  # ticket -> (arrived at, expires at)
    burst: int | None = None  # sends per second at most, learnt from a 429 with room (else the page's table)
    burst_until: float = 0.0  # when the learnt burst is forgotten (Unix seconds)
    safe: int = 0  # the most sends within one burst period answered without a 429 (while the burst is unknown)
    recent: list[tuple[float, str]] = field(default_factory=list)  # (send time, bucket) in the last burst period
    answers: int = 0  # answers taken in, for the evidence of a bucket's own budget (buckets.py)
    reports: dict[str, Report] = field(default_factory=dict)  # each bucket's last report of this window
    separate: dict[str, float] = field(default_factory=dict)  # buckets shown to have a budget of their own -> since
    sent_by: dict[str, int] = field(default_factory=dict)  # this window's sends by bucket (given back on a split)

    @classmethod
    def load(cls, doc: Doc | None, now: float) -> Window:
        """The window a document holds at `now` (Unix seconds), without reservations and tickets that expired.

        An absent or unreadable document reads as a fresh window (nothing known), never as something it is not.
        """
        if doc is None:
            return cls()
        try:
            window = cls._read(doc)
        except (TypeError, ValueError, KeyError, IndexError):
            return cls()  # unreadable: start afresh rather than misread
        window.flights = {k: exp for k, exp in window.flights.items() if exp > now}
        window.waiting = {k: v for k, v in window.waiting.items() if v[1] > now}
        window._forget_implausible(now)
        return window

    @classmethod
    def _read(cls, doc: Doc) -> Window:
        # Raises TypeError, ValueError, KeyError or IndexError on a malformed field; `load` reads those as absent.
        return cls(
            limit=_opt_int(doc.get("limit")),
            remaining=_opt_int(doc.get("remaining")),
            reset_at=_opt_float(doc.get("reset_at")),
            blocked_until=float(doc.get("blocked_until") or 0.0),
            window_s=_opt_float(doc.get("window_s")),
            answered=int(doc.get("answered") or 0),
            sent=int(doc.get("sent") or 0),
            last_send=float(doc["last_send"]) if doc.get("last_send") is not None else -math.inf,
            flights={str(k): float(v) for k, v in dict(doc.get("flights") or {}).items()},
            waiting={str(k): (float(v[0]), float(v[1])) for k, v in dict(doc.get("waiting") or {}).items()},
            burst=_opt_int(doc.get("burst")),
            burst_until=float(doc.get("burst_until") or 0.0),
            safe=int(doc.get("safe") or 0),
            recent=[(float(x[0]), str(x[1])) for x in list(doc.get("recent") or [])],
            answers=int(doc.get("answers") or 0),
            reports={str(k): _report(v) for k, v in dict(doc.get("reports") or {}).items()},
            separate={str(k): float(v) for k, v in dict(doc.get("separate") or {}).items()},
            sent_by={str(k): int(v) for k, v in dict(doc.get("sent_by") or {}).items()},
        )

    def _forget_implausible(self, now: float) -> None:
        """Figures no window can have (kept by an older version, or another writer) are forgotten, not obeyed:
        a reset or penalty more than a day ahead would lock the credential for as long."""
        if self.limit is not None and self.limit <= 0:
            self.limit = None
        if self.reset_at is not None and self.reset_at > now + MAX_WINDOW_S:
            self.reset_at = self.remaining = None
        if self.window_s is not None and not 0 < self.window_s <= MAX_WINDOW_S:
            self.window_s = None
        if self.blocked_until > now + MAX_WINDOW_S:
            self.blocked_until = 0.0
        if self.burst is not None and self.burst <= 0:
            self.burst = None
        burst.forget_old_burst(self, now)

    def dump(self) -> Doc:
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reset_at": self.reset_at,
            "blocked_until": self.blocked_until,
            "window_s": self.window_s,
            "answered": self.answered,
            "sent": self.sent,
            "last_send": None if self.last_send == -math.inf else self.last_send,
            "flights": self.flights,
            "waiting": {k: list(v) for k, v in self.waiting.items()},
            "burst": self.burst,
            "burst_until": self.burst_until,
            "safe": self.safe,
            "recent": [list(x) for x in self.recent],
            "answers": self.answers,
            "reports": {k: dataclasses.asdict(v) for k, v in self.reports.items()},
            "separate": self.separate,
            "sent_by": self.sent_by,
        }

    @property
    def in_flight(self) -> int:
        return len(self.flights)

    def estimate(self, now: float, ahead: int) -> float:
        """Seconds until a call with `ahead` calls before it could go out, from what is known."""
        hard = max(0.0, self.blocked_until - now)
        if self.remaining is None or self.reset_at is None or self.limit is None:
            return hard
        if ahead < self.remaining:
            return hard
        until_reset = max(0.0, self.reset_at - now)
        extra_windows = (ahead - self.remaining) // max(1, self.limit)
        return max(hard, until_reset + extra_windows * (self.window_s or until_reset))


@dataclass(frozen=True)
class Send:
    tracked: bool  # counted in the shared document (and so to be settled there)
    in_period: int = field(default=0, compare=False)  # sends in its burst period, itself included


@dataclass(frozen=True)
class Wait:
    seconds: float
    why: str
    advisory: bool = False  # pacing: never worth failing a call for


@dataclass(frozen=True)
class AwaitAnswers:
    why: str


@dataclass(frozen=True)
class Moved:
    """The asker's bucket has a window of its own now: ask there (nothing was reserved here)."""


Decision = Send | Wait | AwaitAnswers | Moved


@dataclass(frozen=True)
class Asker:
    """Who asks to send: one attempt of one call, at the head of its process's queue."""

    id: str
    arrived_at: float
    probe_first: bool
    paced: bool  # already waited once for pacing: pacing is advisory, never twice
    queued_here: int  # calls waiting behind it in this process
    flight_ttl_s: float
    pace_below: float = 0.1
    own_window: bool = False  # the window is an endpoint's own: no call moves from it, and its unknown burst ramps up
    bucket: str = ""  # the request's method and route
    inherited: tuple[float, ...] = ()  # its bucket's sends still counted in the key's window (burst.py)


def decide(doc: Doc | None, now: float, asker: Asker) -> Change[tuple[Decision, Window]]:
    """Whether `asker` may send at `now` (Unix seconds); if so, its send is reserved in the same step.

    The steps, in order: the window may hold everyone (`held`); else a window whose reset passed turns
    (`turn_if_over`) and older calls or pacing may hold this one (`queued_or_paced`). A call held keeps its
    ticket (`keep_ticket`); a call let out is reserved (`let_out`).
    """
    w = Window.load(doc, now)
    if not asker.own_window and asker.bucket in w.separate:
        return Change((Moved(), w))  # split off while it waited here: its sends count in its own window now
    learning = is_learning(w, asker)
    decision = held(w, now, learning)
    if decision is None:
        turn_if_over(w, now)
        decision = queued_or_paced(w, now, asker) or burst_held(w, now, asker)
    if decision is not None:
        return keep_ticket(doc, w, now, asker, decision)
    return let_out(doc, w, now, asker, learning)


def is_blocked(w: Window, now: float) -> bool:
    """Whether a rate-limit 429's penalty still holds every call at `now` (Unix seconds)."""
    return w.blocked_until > now


def is_spent(w: Window, now: float) -> bool:
    """Whether the known budget is used up and its reset (if known) is still ahead of `now` (Unix seconds)."""
    return w.remaining is not None and w.remaining <= 0 and (w.reset_at is None or now < w.reset_at)


def is_learning(w: Window, asker: Asker) -> bool:
    """Whether the limit is still unknown and the gate lets a single probe out at a time to learn it."""
    return asker.probe_first and w.limit is None and w.answered < PROBE_ANSWERS


def held(w: Window, now: float, learning: bool) -> Decision | None:
    """Which hold the window puts on every call: answers still out first, a 429's penalty, a spent budget, or none.

    Waits are in seconds from `now` (Unix seconds).
    """
    blocked, spent = is_blocked(w, now), is_spent(w, now)
    if (blocked or spent or learning) and w.in_flight > 0:
        # Let the requests already out be answered first: what they say may change the wait.
        return AwaitAnswers("waiting for answers to requests already sent")
    if blocked:
        return Wait(w.blocked_until - now, "rate limited by the upstream")
    if spent and w.reset_at is not None:
        return Wait(w.reset_at - now, "rate limit budget spent")
    # A spent budget with no reset known falls through: `queued_or_paced` holds it (older >= remaining = 0).
    return None


def turn_if_over(w: Window, now: float) -> None:
    """Start a fresh window (in place) once the reset has passed at `now` (Unix seconds)."""
    if w.reset_at is not None and now >= w.reset_at:
        # The window is over: a fresh one starts with our next send. Sends still unanswered may land
        # in it, so they count against it.
        w.sent = w.in_flight
        w.sent_by = {}
        w.remaining = None if w.limit is None else max(0, w.limit - w.sent)
        w.reset_at = None


def older_waiting(w: Window, asker: Asker) -> int:
    """How many calls of other processes still wait that arrived before `asker`."""
    return sum(1 for k, (arrived, _) in w.waiting.items() if k != asker.id and arrived < asker.arrived_at)


def others_waiting(w: Window, asker: Asker) -> int:
    """How many calls of other processes still wait, older or not."""
    return sum(1 for k in w.waiting if k != asker.id)


def queued_or_paced(w: Window, now: float, asker: Asker) -> Decision | None:
    """Whether older calls (first come, first served) or pacing hold `asker` in an open window.

    A window with a burst is paced at its burst rate (`burst_held`), never spread thinly over the window.
    """
    if w.remaining is not None and older_waiting(w, asker) >= w.remaining:
        return AwaitAnswers("waiting for calls that came first")
    if burst.allowed(w, asker.own_window) is not None:
        return None
    if not asker.paced and (seconds := pace(w, now, asker, others_waiting(w, asker))) > 0:
        return Wait(seconds, "pacing the last requests of the window", advisory=True)
    return None


def burst_held(w: Window, now: float, asker: Asker) -> Decision | None:
    """Whether the burst holds the next send: paced at the burst rate, or, while finding it, one send at a time."""
    seconds = burst.burst_wait(w, now, asker.own_window, asker.inherited, excluding=w.separate.keys())
    if seconds <= 0:
        return None
    if burst.ramping(w, asker.own_window) and w.in_flight > 0:
        return AwaitAnswers("finding the upstream's burst rate")  # an answer may allow one more at once
    return Wait(seconds, "pacing at the upstream's burst rate")


def wakes_at(decision: Decision, now: float) -> float:
    """When (Unix seconds) a held call looks at the gate again: after its wait, or at once to await answers."""
    return now + (decision.seconds if isinstance(decision, Wait) else 0.0)


def ticket_is_fresh(ticket: tuple[float, float] | None, wake: float) -> bool:
    """Whether a waiting call's ticket still outlives its next look (at `wake`, Unix seconds) by half the grace."""
    return ticket is not None and ticket[1] >= wake + TICKET_GRACE_S / 2


def keep_ticket(
    doc: Doc | None, w: Window, now: float, asker: Asker, decision: Decision
) -> Change[tuple[Decision, Window]]:
    """A held call's ticket: rewritten to expire a grace after its next look, unless fresh and nothing changed."""
    wake = wakes_at(decision, now)
    if ticket_is_fresh(w.waiting.get(asker.id), wake) and doc is not None and not _changed(doc, w):
        return Change((decision, w))  # ticket still fresh and nothing else changed: no write
    w.waiting[asker.id] = (asker.arrived_at, wake + TICKET_GRACE_S)
    return Change((decision, w), w.dump(), WINDOW_TTL_S)


def is_tracked(w: Window, learning: bool) -> bool:
    """Whether a send must be counted in the shared document: something is known, learnt, waiting or out."""
    return w.limit is not None or w.remaining is not None or learning or bool(w.waiting) or w.in_flight > 0


def let_out(doc: Doc | None, w: Window, now: float, asker: Asker, learning: bool) -> Change[tuple[Decision, Window]]:
    """A call let out: reserved and counted when tracked; untracked, written only to clean a changed document."""
    if not is_tracked(w, learning):
        # Nothing is known to count against (so nobody waits either): a write only stores what loading dropped.
        if doc is None or not _changed(doc, w):
            return Change((Send(tracked=False), w))
        return Change((Send(tracked=False), w), w.dump(), WINDOW_TTL_S)
    in_period = reserve(w, now, asker)
    return Change((Send(tracked=True, in_period=in_period), w), w.dump(), WINDOW_TTL_S)


def reserve(w: Window, now: float, asker: Asker) -> int:
    """Count one send of `asker` against the window (in place), in flight until `now + flight_ttl_s` (Unix s).

    Returns how many sends its burst period holds with it.
    """
    w.waiting.pop(asker.id, None)
    if w.remaining is not None:
        w.remaining -= 1
    w.sent += 1
    w.sent_by[asker.bucket] = w.sent_by.get(asker.bucket, 0) + 1
    w.flights[asker.id] = now + asker.flight_ttl_s
    w.last_send = now
    return burst.note_send(w, now, asker.bucket)


def _changed(doc: Doc, w: Window) -> bool:
    return doc != w.dump()


def pace(w: Window, now: float, asker: Asker, others: int) -> float:
    """Seconds to hold `asker` so the last sends spread over the window, when the budget runs low and more wait.

    0 while the budget is not low (above `pace_below` of the limit), when it covers every call waiting, or
    when the window is not known; the interval runs from the last send, `now` in Unix seconds.
    """
    if w.limit is None or w.remaining is None or w.reset_at is None:
        return 0.0
    demand = asker.queued_here + 1 + others
    if w.remaining > asker.pace_below * w.limit or demand <= w.remaining:
        return 0.0
    # Spread over the window's time left, less a tenth of the window as a margin, in remaining + 1
    # intervals: the last paced send lands well before the reset, never slipping into the next window.
    margin = 0.1 * (w.window_s or (w.reset_at - now))
    interval = max(0.0, w.reset_at - now - margin) / (w.remaining + 1)
    return max(0.0, w.last_send + interval - now)


@dataclass(frozen=True)
class Answer:
    """What one answer (or its absence) says, for `settle`."""

    reservation: str
    tracked: bool
    answered: bool  # False: no answer came (failure, cancellation)
    sent: bool = True  # with answered=False: whether the request may have left
    limit: int | None = None
    remaining: int | None = None
    reset: int | None = None
    throttled_for: float | None = None  # a rate-limit 429: hold everyone this long
    status: int | None = None  # the HTTP status, when one came
    bucket: str | None = None  # the request's method and route
    in_period: int = 0  # sends in the request's burst period, itself included
    answers_at_send: int = 0  # the window's count of answers when the request was let out

    @classmethod
    def from_headers(cls, reservation: str, tracked: bool, headers: Mapping[str, str], **kw: Any) -> Answer:
        limit, remaining, reset = (_header_int(headers.get(h)) for h in RATE_LIMIT_HEADERS)
        return cls(reservation, tracked, True, limit=limit, remaining=remaining, reset=reset, **kw)

    @property
    def informative(self) -> bool:
        return self.tracked or self.limit is not None or self.remaining is not None or self.throttled_for is not None


def settle(doc: Doc | None, now: float, answer: Answer) -> Change[Window]:
    """Learn from an answer at `now` (Unix seconds): its rate-limit headers and, for a rate-limit 429, the hold.

    The steps: a request that got no answer gives back its place if it never left (`give_back_unsent`);
    an answer's report counts only for the current window (`reports_current_window`), where it may start
    a newer one (`starts_newer_window`, `learn_report`).
    """
    w = Window.load(doc, now)
    if not answer.informative:
        return Change(w)
    w.flights.pop(answer.reservation, None)
    if not answer.answered:
        give_back_unsent(w, answer)
        return Change(w, w.dump(), WINDOW_TTL_S)
    w.answered += 1
    # The headers' figures bounded first: a reset in milliseconds or years ahead is never kept.
    seen = plausible_rate_limit(answer.limit, answer.remaining, answer.reset, now)
    if seen.limit is not None:
        w.limit = seen.limit
    if seen.remaining is not None and seen.reset_at is not None and reports_current_window(seen.reset_at, now):
        learn_report(w, now, seen.remaining, seen.reset_at)
        learn_budget_owner(w, now, answer, Report(answer.bucket or "", seen.remaining, seen.reset_at, seen.limit, 0))
    learn_burst(w, now, answer, seen.remaining)
    if answer.throttled_for is not None:
        w.blocked_until = max(w.blocked_until, now + answer.throttled_for)
    return Change(w, w.dump(), WINDOW_TTL_S)


def learn_burst(w: Window, now: float, answer: Answer, remaining: int | None) -> None:
    """Take in (in place) what an answer says of the burst: a 429 with room left is one, anything else is safe."""
    if answer.status == 429:
        if remaining is not None and remaining > 0 and answer.in_period > 0 and burst.may_burst(w):
            burst.note_burst_refusal(w, answer.in_period, now)
    elif answer.in_period > 0:
        burst.note_success(w, answer.in_period)


def learn_budget_owner(w: Window, now: float, answer: Answer, report: Report) -> None:
    """Take in (in place) an answer's report as evidence of whose budget its bucket spends (`buckets.py`)."""
    if answer.bucket is None:
        return
    if shows_own_budget(
        w.reports.values(), answer.bucket, report.remaining, report.reset_at, report.limit, answer.answers_at_send
    ):
        w.separate[answer.bucket] = now
        give_back_split(w, answer.bucket)
    w.answers += 1
    w.reports = latest(w.reports, dataclasses.replace(report, answers_at=w.answers))


def give_back_split(w: Window, bucket: str) -> None:
    """Give back (in place) a split-off bucket's sends of this window: they never spent what it has left."""
    moved = w.sent_by.pop(bucket, 0)
    w.sent = max(0, w.sent - moved)
    if w.remaining is not None:
        w.remaining += moved if w.limit is None else min(moved, max(0, w.limit - w.remaining))


def give_back_unsent(w: Window, answer: Answer) -> None:
    """Give back (in place) the budget place of a tracked request that never left; one that may have left keeps it."""
    if not answer.sent and answer.tracked:
        w.sent = max(0, w.sent - 1)  # it never left: its place in the budget is given back
        if w.remaining is not None:
            w.remaining += 1


def reports_current_window(reset: float, now: float) -> bool:
    """Whether a report whose window resets at `reset` (Unix seconds) still speaks of the window open at `now`."""
    # An answer from a window that is already over says nothing about the current one.
    return reset > now


def starts_newer_window(w: Window, reset: float) -> bool:
    """Whether a reset time (Unix seconds) is the first one known, or later than the known one by over half a second."""
    return w.reset_at is None or reset > w.reset_at + 0.5


def learn_report(w: Window, now: float, remaining: int, reset: float) -> None:
    """Take in (in place) a current report of `remaining` sends until `reset` (Unix seconds)."""
    if not starts_newer_window(w, reset):
        w.remaining = _remaining(w, remaining, assumed=w.remaining)
        return
    # The distance to a window's reset, at its first answer, is at most the window's length: the longest
    # such distance seen is the length (never the limit's value: 100 is per hour on one page, per minute on another).
    w.window_s = max(w.window_s or 0.0, min(MAX_WINDOW_S, max(1.0, reset - now)))
    if w.reset_at is not None:
        # The upstream's window moved on without us seeing it turn: this answer's request, and
        # any still unanswered, may be counted in the new one.
        w.sent = w.in_flight + 1
        w.sent_by = {}
    w.reset_at = float(reset)
    w.remaining = _remaining(w, remaining, assumed=None)


def _remaining(w: Window, reported: int, assumed: int | None) -> int:
    """The budget left, from our own count of sends and what the upstream reported.

    The upstream's figure is already stale by the sends still in flight, so on its own it can only
    be trusted pessimistically (less those in flight). Our own count (limit less sends this window)
    is exact while nobody else uses the credential, which a report at or above it confirms; a lower
    report means someone else does, and then the pessimistic reading is the safe one.
    """
    own = assumed if assumed is not None else (None if w.limit is None else max(0, w.limit - w.sent))
    floor = max(0, reported - w.in_flight)  # the pessimistic reading: every send in flight uncounted
    if own is None:
        return floor
    if reported >= own:
        # Nobody else spends. At a window's first answer our count may still be low: a send that
        # crossed into this window was counted against it, and the upstream may have counted it
        # in the last one. (Later answers may be staler than ones already settled: no give-back.)
        return max(own, floor) if assumed is None else own
    return min(own, floor)


def renew_flights(doc: Doc | None, now: float, reservations: set[str], until: float) -> Change[None]:
    """Keep this process's sends in flight reserved; one that already ran out stays gone."""
    w = Window.load(doc, now)
    mine = reservations & w.flights.keys()
    if not mine:
        return Change(None)
    for reservation in mine:
        w.flights[reservation] = until
    return Change(None, w.dump(), WINDOW_TTL_S)


def seed_limit(doc: Doc | None, now: float, limit: int) -> Change[None]:
    """Start a window whose limit is unknown from a limit learnt elsewhere (the plan), so it need not probe.

    A limit the answers already told is kept: they are the upstream's word for this window.
    """
    w = Window.load(doc, now)
    if w.limit is not None or limit <= 0:
        return Change(None)
    w.limit = limit
    return Change(None, w.dump(), WINDOW_TTL_S)


def forget_ticket(doc: Doc | None, now: float, ticket: str) -> Change[None]:
    """A call that stopped waiting (cancelled, out of budget) takes its ticket back."""
    w = Window.load(doc, now)
    if ticket not in w.waiting:
        return Change(None)
    del w.waiting[ticket]
    return Change(None, w.dump(), WINDOW_TTL_S)


def _header_int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (ValueError, OverflowError):  # "inf" is a float, and no int
        return None


def _report(value: Any) -> Report:
    limit = value.get("limit")
    return Report(
        str(value["bucket"]), int(value["remaining"]), float(value["reset_at"]),
        None if limit is None else int(limit), int(value["answers_at"]),
    )  # fmt: skip


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
