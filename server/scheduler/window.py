"""The rate-limit state of one credential as a shared document: what it holds, read, written and kept tidy.

Every process that uses the credential reads and changes this one document through the state
store, each decision in one atomic update: "may this request go now?" reserves a send before it
leaves (so N processes together never send more than the budget left; `admit.py`), and "what did
the answer say?" settles it from the rate-limit headers (`settle.py`). A reservation of a process
that dies expires.

Waiting calls of all processes leave a ticket with their arrival time, their principal and their start tag
(start-time fair queuing: `admit.py`); a send is granted only while the budget left covers every ticket ahead
of it (a smaller tag, or an equal one that came first), so principals take turns by weight whichever process
or replica holds their calls. Tickets expire too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from server.httpio import MAX_WINDOW_S
from server.scheduler import bounds, burst
from server.scheduler.buckets import Report
from server.state.store import Change, Doc

WINDOW_TTL_S = 86_400.0


class Ticket(NamedTuple):
    """A waiting call's place in the shared queue; times are Unix seconds."""

    arrived_at: float
    expires_at: float
    tag: float  # its start tag, given once when it first waited: max(V, its principal's last tag) + 1/weight
    principal: str  # whom it waits as (`context.Turn.key`)


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
    waiting: dict[str, Ticket] = field(default_factory=dict)  # waiting call -> its ticket
    virtual: float = 0.0  # V: the start tag of the last call let out (fair queuing's virtual time)
    # principal -> (its last tag let out, its weight, sending until): who sent a moment ago and may send again
    active: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    burst: int | None = None  # sends per second at most, learnt from a 429 with room (else the page's table)
    burst_until: float = 0.0  # when the learnt burst is forgotten (Unix seconds)
    safe: int = 0  # the most sends within one burst period answered without a 429 (while the burst is unknown)
    recent: list[tuple[float, str]] = field(default_factory=list)  # (send time, bucket) in the last burst period
    answers: int = 0  # answers taken in, for the evidence of a bucket's own budget (buckets.py)
    reports: dict[str, Report] = field(default_factory=dict)  # each bucket's last report of this window
    separate: dict[str, float] = field(default_factory=dict)  # buckets shown to have a budget of their own -> since
    sent_by: dict[str, int] = field(default_factory=dict)  # this window's sends by bucket (given back on a split)
    windows: int = 0  # windows whose first answer was seen, at most 2: from the second, window_s is the length

    @classmethod
    def load(cls, doc: Doc | None, now: float) -> Window:
        """The window a document holds at `now` (Unix seconds), without reservations and tickets that expired.

        An absent or unreadable document reads as a fresh window (nothing known), never as something it is not;
        every time and count is then bounded (`bounds.py`).
        """
        if doc is None:
            return cls()
        try:
            window = cls._read(doc)
        except (TypeError, ValueError, KeyError, IndexError):
            return cls()  # unreadable: start afresh rather than misread
        window._bound(now)
        return window

    @classmethod
    def _read(cls, doc: Doc) -> Window:
        # Raises Malformed (a ValueError) or KeyError on a field of the wrong type; `load` reads those as absent.
        def opt(name: str, read: Callable[[object], Any]) -> Any:
            return None if bounds.absent(doc, name) else read(doc[name])

        return cls(
            limit=opt("limit", bounds.count),
            remaining=opt("remaining", bounds.count),
            reset_at=opt("reset_at", bounds.number),
            blocked_until=opt("blocked_until", bounds.number) or 0.0,
            window_s=opt("window_s", bounds.number),
            answered=opt("answered", bounds.count) or 0,
            sent=opt("sent", bounds.count) or 0,
            last_send=-math.inf if bounds.absent(doc, "last_send") else bounds.number(doc["last_send"]),
            flights={k: bounds.number(v) for k, v in bounds.mapping(doc.get("flights")).items()},
            waiting={k: _ticket(v) for k, v in bounds.mapping(doc.get("waiting")).items()},
            virtual=opt("virtual", bounds.number) or 0.0,
            active={k: _active(v) for k, v in bounds.mapping(doc.get("active")).items()},
            burst=opt("burst", bounds.count),
            burst_until=opt("burst_until", bounds.number) or 0.0,
            safe=opt("safe", bounds.count) or 0,
            recent=_recent(doc.get("recent")),
            answers=opt("answers", bounds.count) or 0,
            reports={k: _report(k, v) for k, v in bounds.mapping(doc.get("reports")).items()},
            separate={k: bounds.number(v) for k, v in bounds.mapping(doc.get("separate")).items()},
            sent_by={k: bounds.count(v) for k, v in bounds.mapping(doc.get("sent_by")).items()},
            windows=opt("windows", bounds.count) or 0,
        )

    def _bound(self, now: float) -> None:
        """Expire and clamp (in place) what was read: figures no window can have (kept by an older version, or
        planted by another writer of the store) are forgotten or bounded, never obeyed (`bounds.py`)."""
        self.flights = {k: min(exp, now + bounds.MAX_FLIGHT_S) for k, exp in self.flights.items() if exp > now}
        self.virtual = bounds.clamp_virtual(self.virtual)
        self.waiting = {
            k: Ticket(t.arrived_at, min(t.expires_at, now + bounds.MAX_TICKET_S),
                      bounds.clamp_tag(t.tag, self.virtual), t.principal)
            for k, t in self.waiting.items() if t.expires_at > now
        }  # fmt: skip
        self.active = {
            k: (tag, min(max(weight, bounds.MIN_WEIGHT), bounds.MAX_WEIGHT), min(until, now + bounds.ACTIVE_S))
            for k, (tag, weight, until) in self.active.items() if until > now
        }  # fmt: skip
        self._bound_figures(now)
        self._bound_counts(now)
        burst.forget_old_burst(self, now)

    def _bound_figures(self, now: float) -> None:
        if self.limit is not None and not 0 < self.limit <= bounds.MAX_COUNT:
            self.limit = None
        if self.remaining is not None:
            self.remaining = min(bounds.clamp_count(self.remaining), self.limit or bounds.MAX_COUNT)
        if self.reset_at is not None and self.reset_at > now + MAX_WINDOW_S:
            self.reset_at = self.remaining = None
        if self.window_s is not None and not 0 < self.window_s <= MAX_WINDOW_S:
            self.window_s = None
        if self.blocked_until > now + MAX_WINDOW_S:
            self.blocked_until = 0.0
        if self.burst is not None and not 0 < self.burst <= bounds.MAX_COUNT:
            self.burst = None
        self.burst_until = min(self.burst_until, now + burst.LEARNT_FOR_S)

    def _bound_counts(self, now: float) -> None:
        self.answered, self.sent = bounds.clamp_count(self.answered), bounds.clamp_count(self.sent)
        self.safe, self.answers = bounds.clamp_count(self.safe), bounds.clamp_count(self.answers)
        self.windows = min(max(0, self.windows), 2)
        self.last_send = min(self.last_send, now)
        # A budget whose reset is unknown (a window turned, its first answer not in) lasts a window at most past
        # the last send: then that window is over too, and the budget is the limit again.
        stale = self.last_send + (self.window_s or MAX_WINDOW_S) <= now
        if self.reset_at is None and self.remaining is not None and not self.flights and stale:
            self.remaining = self.limit
        # Oldest first, whatever order the document held them in (its buckets' groups have none between them).
        self.recent = sorted((min(t, now), b) for t, b in self.recent)[-bounds.RECENT_KEPT :]
        self.sent_by = {k: bounds.clamp_count(v) for k, v in self.sent_by.items()}
        by_age = sorted(self.reports.items(), key=lambda kv: (kv[1].answers_at, kv[0]))
        self.reports = dict(by_age[-bounds.REPORTS_KEPT :])

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
            "recent": _grouped(self.recent),
            "answers": self.answers,
            "reports": {k: [r.remaining, r.reset_at, r.limit, r.answers_at] for k, r in self.reports.items()},
            "separate": self.separate,
            "sent_by": self.sent_by,
            "windows": self.windows,
            "virtual": self.virtual,
            "active": {k: list(v) for k, v in self.active.items()},
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


def _report(bucket: str, value: Any) -> Report:
    """A bucket's report as kept, `[remaining, reset_at, limit, answers_at]` (an object naming them, as kept before,
    read too); the bucket is its key.

    Raises:
        Malformed: a figure missing or of the wrong type (`load` reads the document as absent).
    """
    if isinstance(value, dict):
        value = [value.get("remaining"), value.get("reset_at"), value.get("limit"), value.get("answers_at")]
    found = bounds.sequence(value)
    if len(found) < 4:
        raise bounds.Malformed("too short")
    limit = None if found[2] is None else bounds.count(found[2])
    return Report(
        bucket, bounds.clamp_count(bounds.count(found[0])), bounds.number(found[1]), limit,
        bounds.clamp_count(bounds.count(found[3])),
    )  # fmt: skip


def _recent(value: object) -> list[tuple[float, str]]:
    """The sends of the last burst period as kept, each bucket's times under its name once (a list of `[time,
    bucket]` pairs, as kept before, read too); loading sorts them.

    Raises:
        Malformed: a time or a name of the wrong type (`load` reads the document as absent).
    """
    if isinstance(value, dict):
        return [(bounds.number(t), bounds.text(b)) for b, times in value.items() for t in bounds.sequence(times)]
    return [_pair(x) for x in bounds.sequence(value)]


def _ticket(value: object) -> Ticket:
    found = bounds.sequence(value)
    if len(found) < 4:
        raise bounds.Malformed("too short")
    return Ticket(bounds.number(found[0]), bounds.number(found[1]), bounds.number(found[2]), bounds.text(found[3]))


def _active(value: object) -> tuple[float, float, float]:
    found = bounds.sequence(value)
    if len(found) < 3:
        raise bounds.Malformed("too short")
    return bounds.number(found[0]), bounds.number(found[1]), bounds.number(found[2])


def _pair(value: object) -> tuple[float, str]:
    found = bounds.sequence(value)
    if len(found) < 2:
        raise bounds.Malformed("too short")
    return bounds.number(found[0]), bounds.text(found[1])


def _grouped(recent: list[tuple[float, str]]) -> dict[str, list[float]]:
    """Each bucket's send times, its name written once (a document read and rewritten on every decision)."""
    grouped: dict[str, list[float]] = {}
    for t, bucket in recent:
        grouped.setdefault(bucket, []).append(t)
    return grouped
