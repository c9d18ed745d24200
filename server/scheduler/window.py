"""The rate-limit state of one credential as a shared document: what it holds, read, written and kept tidy.

Every process that uses the credential reads and changes this one document through the state
store, each decision in one atomic update: "may this request go now?" reserves a send before it
leaves (so N processes together never send more than the budget left; `admit.py`), and "what did
the answer say?" settles it from the rate-limit headers (`settle.py`). A reservation of a process
that dies expires.

Waiting calls of all processes leave a ticket with their arrival time; a send is granted only
while the budget left covers every older ticket, so calls go roughly in arrival order whichever
process holds them. Tickets expire too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from server.httpio import MAX_WINDOW_S
from server.scheduler import burst
from server.scheduler.buckets import Report
from server.state.store import Change, Doc

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
