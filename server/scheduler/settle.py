"""What did the answer say? The pure steps that settle a send on a credential's shared window (`window.py`).

An answer's rate-limit headers, bounded first, teach the window its limit, budget left and reset; a 429
holds every call or teaches the burst; a request that never left gives its place back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.httpio import MAX_WINDOW_S, RATE_LIMIT_HEADERS, plausible_rate_limit
from server.scheduler import burst
from server.scheduler.buckets import Report, latest, shows_own_budget
from server.scheduler.window import WINDOW_TTL_S, Window
from server.state.store import Change, Doc


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
    in_second: int = 0  # of those, the sends in its whole second (what a 429 teaches of the burst)
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
        give_back_refused(w, answer)
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
            burst.note_burst_refusal(w, answer.in_second or answer.in_period, now)
    elif answer.in_period > 0:
        burst.note_success(w, answer.in_second or answer.in_period)


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


def give_back_refused(w: Window, answer: Answer) -> None:
    """Give back (in place) the budget place of a tracked request refused with a 429 (it is sent again, counted
    again): an upstream that counted it anyway reports less left, and the report then takes the place back."""
    if answer.status == 429 and answer.tracked:
        w.sent = max(0, w.sent - 1)
        if w.remaining is not None:
            w.remaining = min(w.remaining + 1, w.limit) if w.limit is not None else w.remaining + 1


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
    # It is the length only once a turn was seen: the first answer may come late in its window (`burst.length_known`).
    w.window_s = max(w.window_s or 0.0, min(MAX_WINDOW_S, max(1.0, reset - now)))
    w.windows = min(2, w.windows + 1)
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


def _header_int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (ValueError, OverflowError):  # "inf" is a float, and no int
        return None
