"""Per-second bursts: pacing a window's sends at the upstream's burst rate, and learning that rate.

NeuralSnap's rate-limits page adds a per-second burst to its per-minute, per-endpoint windows; its
other pages name none. So a window whose limit is in the page's table, and whose length is a minute
at most, starts from the table's burst. A short window of an endpoint shown to have a budget of its
own (the page with bursts) whose limit the table does not name ramps up: one send at a time beyond
the most sends per second already answered without a 429 (`safe`), starting from the window's average
rate (its limit over its length: a burst below it would leave the limit out of reach), so finding its
burst costs at most one 429 and never starts slower than the window allows. So does a key's window that
several endpoints share (they may each have a budget, and a burst, of their own). A window's length counts
as known only once a turn was seen (`windows`): the first answer may come late in the upstream's window, and
its reset then reads the window as a second long, its average as the whole limit each second; until then
the ramp starts from one send a second. A 429 that arrives while a window still has room is its burst: the
rate is set just below what that whole second held (sends are counted by the whole second they fall in, as
the upstream counts its resets, so a ramp that crosses a second never teaches a burst above the real one).
Other windows (an hour; a key's one budget used by one endpoint) carry no burst until a 429 says otherwise.

Pure functions over a `Window`; the gate applies them inside its atomic store updates.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Protocol

from server.scheduler.buckets import Report


class Window(Protocol):
    """What the burst reads and keeps of a window (`window.Window` has it)."""

    limit: int | None
    window_s: float | None
    burst: int | None
    burst_until: float
    safe: int
    recent: list[tuple[float, str]]
    windows: int
    separate: dict[str, float]
    sent_by: dict[str, int]
    reports: dict[str, Report]


BURST_S = 1.0  # the pages' burst is per second
MARGIN_S = 0.05  # sends are spaced a little wider, so the upstream's own count never sees one too many
PAGE_BURSTS = {60: 10, 30: 5, 10: 2, 300: 30, 120: 20}  # the rate-limits page: per-minute limit -> burst
MAX_BURST_WINDOW_S = 90.0  # a window this short may carry a burst (the page's are per minute)
LEARNT_FOR_S = 600.0  # a burst learnt from a 429 is kept this long, then found again (it may have been wrong)


def counts(t: float, now: float) -> bool:
    """Whether a send at `t` still counts towards the burst at `now` (Unix seconds)."""
    return t > now - BURST_S - MARGIN_S


def recent_sends(w: Window, now: float, bucket: str | None = None, excluding: Collection[str] = ()) -> list[float]:
    """The window's sends (Unix seconds, oldest first) that still count towards the burst at `now`;
    with `bucket`, only that bucket's (what an endpoint split off takes along to its own window); sends of
    the buckets `excluding` (split off since: they count in their own windows) left out."""
    return [t for t, b in w.recent if counts(t, now) and bucket in (None, b) and b not in excluding]


def may_burst(w: Window) -> bool:
    """Whether the window is short enough to carry a per-second burst (its length learnt from its reset)."""
    return w.window_s is not None and w.window_s <= MAX_BURST_WINDOW_S


def length_known(w: Window) -> bool:
    """Whether the window's length is known: a turn was seen (a later window's first answer), so `window_s` is
    the length, not the distance to a reset that came late in the first window (a lower bound)."""
    return w.windows >= 2 and w.window_s is not None


def shared(w: Window, bucket: str) -> bool:
    """Whether several endpoints send through the window: another bucket's sends or answers are in it, or one was
    split off (the upstream keeps budgets per endpoint). A window of one endpoint alone sends as before."""
    return bool(w.separate) or any(b != bucket for b in (*w.sent_by, *w.reports))


def page_burst(w: Window) -> int | None:
    """The rate-limits page's burst for a per-minute window of this limit, if the page names one."""
    return PAGE_BURSTS.get(w.limit) if w.limit is not None and may_burst(w) else None


def allowed(w: Window, ramp: bool) -> int | None:
    """Sends per burst period the window lets out: the burst, or while ramping one beyond the most found safe and
    never fewer than the window's average rate; None when it has no burst.

    `ramp`: the window is an endpoint's own, or shared by several (the model with bursts), so an unknown burst is
    found by ramping.
    """
    if w.burst is not None:
        return w.burst
    if (from_page := page_burst(w)) is not None:
        return from_page
    return max(w.safe + 1, average(w)) if ramping(w, ramp) else None


def average(w: Window) -> int:
    """Sends per burst period at the window's average rate (its limit over its length, rounded down), at least 1.

    Any burst an upstream sets allows at least this, or the window's limit could never be reached: an unknown
    burst starts here, not at one send a second. Before the window's length is known, 1: a length read from a
    late first answer is too short, and its average too high.
    """
    if w.limit is None or not w.window_s or not length_known(w):
        return 1
    return max(1, math.floor(w.limit * BURST_S / w.window_s))


def ramping(w: Window, ramp: bool) -> bool:
    """Whether the burst is still being found: an endpoint's (or several endpoints') short window whose burst neither
    page nor 429 told."""
    return ramp and w.burst is None and page_burst(w) is None and may_burst(w)


def counted(w: Window, now: float, inherited: tuple[float, ...] = (), excluding: Collection[str] = ()) -> list[float]:
    """The sends that count towards the burst at `now`: the window's, less those of the buckets `excluding`, and
    the `inherited` ones (see `burst_wait`)."""
    return [*recent_sends(w, now, excluding=excluding), *(t for t in inherited if counts(t, now))]


def probes(w: Window, now: float, inherited: tuple[float, ...] = (), excluding: Collection[str] = ()) -> bool:
    """Whether one more send at `now` would go beyond both what went through without a 429 (`safe`) and the
    window's average: a probe of an unknown burst, which goes alone (nothing else in flight), so that finding the
    burst costs one 429, not one for each send that an old send leaving the period let out beside it."""
    return len(counted(w, now, inherited, excluding)) + 1 > max(w.safe, average(w))


def burst_wait(
    w: Window, now: float, ramp: bool, inherited: tuple[float, ...] = (), excluding: Collection[str] = ()
) -> float:
    """Seconds until one more send fits the burst (0 when it fits now); `now` in Unix seconds.

    `inherited`: sends of this window's bucket still counted in the key's window, from before it was split
    off; `excluding`: buckets split off from this window, whose sends no longer count here.
    """
    cap = allowed(w, ramp)
    if cap is None:
        return 0.0
    recent = sorted(counted(w, now, inherited, excluding))
    if len(recent) < cap:
        return 0.0
    return max(0.0, recent[-cap] + BURST_S + MARGIN_S - now)


def note_send(
    w: Window, now: float, bucket: str, inherited: tuple[float, ...] = (), excluding: Collection[str] = ()
) -> tuple[int, int]:
    """Count a send of `bucket` at `now` (in place) towards the burst; returns how many sends of those
    `burst_wait` counts (`inherited` and `excluding` as there) its last period holds with it, and how many its
    whole second holds.

    The whole second is what a 429 teaches (`note_burst_refusal`): an upstream that counts whole seconds refused
    a send only if that second held more than its burst; the period's count may hold sends of the second before.
    """
    w.recent = [*((t, b) for t, b in w.recent if counts(t, now)), (now, bucket)][-64:]
    sends = counted(w, now, inherited, excluding)
    second = math.floor(now)
    return len(sends), sum(1 for t in sends if math.floor(t) == second)


def note_success(w: Window, in_second: int) -> None:
    """An answer without a 429, to a send that was one of `in_second` in its whole second: that many are safe (a
    count over the last period may hold sends of the second before, and prove more than the upstream allows)."""
    w.safe = max(w.safe, in_second)


def note_burst_refusal(w: Window, in_period: int, now: float) -> None:
    """A 429 while the window had room: the burst is below `in_period` (the sends of its whole second); pace just
    under it for `LEARNT_FOR_S`.

    Sends this window did not see (another process's, before its endpoint was split off) can make the burst
    look lower than it is: so the verdict is kept only for a while, then found again.
    """
    known = w.burst if w.burst is not None else page_burst(w)
    ceiling = in_period - 1 if known is None else min(known, in_period - 1)
    # Never below the window's average rate: a 429 that says less counted sends this window did not see (another
    # bucket's, before its split), and pacing below it would leave the window's limit out of reach.
    w.burst = max(1, average(w), ceiling)
    w.burst_until = now + LEARNT_FOR_S


def forget_old_burst(w: Window, now: float) -> None:
    """Drop (in place) a learnt burst whose time is up: the page's table or the ramp decide again."""
    if w.burst is not None and w.burst_until <= now:
        w.burst, w.safe = None, 0
