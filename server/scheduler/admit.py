"""May this request go now? The pure steps of one decision on a credential's shared window (`window.py`).

A call is let out and its send reserved in the same atomic update, or held: by answers still out, a 429's
penalty, a spent budget, calls of any process ahead of it, pacing, or the burst. A call held keeps a ticket.

Which calls are ahead is start-time fair queuing between principals: a call's start tag is given once, when it
first asks, as `max(V, its principal's last tag) + 1/weight` (its principal's last tag: the largest among that
principal's waiting tickets, of any process); a call is ahead when its tag is smaller, or equal and it came
first; V becomes the tag of each call let out. One principal's calls on k replicas hold k tickets with tags a
1/weight apart, so they take k turns to another's one only as their weight says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.scheduler import bounds, burst
from server.scheduler.window import WINDOW_TTL_S, Ticket, Window
from server.state.store import Change, Doc

PROBE_ANSWERS = 3  # header-less answers after which the gate stops probing one request at a time
ANSWERS_OUT = "waiting for answers to requests already sent"
CAME_FIRST = "waiting for calls that came first"  # or whose principals' turn it is (fair queuing)
FINDING_BURST = "finding the upstream's burst rate"
YIELDING = "letting the call whose turn it is go first"
YIELD_S = 0.05  # a call behind another principal's call that is due to look waits this long, then looks again
TICKET_GRACE_S = bounds.TICKET_GRACE_S  # a waiting call's ticket outlives its next look at the gate by this much


@dataclass(frozen=True)
class Send:
    tracked: bool  # counted in the shared document (and so to be settled there)
    in_period: int = field(default=0, compare=False)  # sends in its burst period, itself included
    in_second: int = field(default=0, compare=False)  # of those, the sends in its whole second


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
    principal: str = ""  # whom it waits as (`context.Turn.key`): fair queuing's flow
    weight: float = 1.0  # its principal's weight (> 0)


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
        return AwaitAnswers(ANSWERS_OUT)
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


def tag_of(w: Window, asker: Asker) -> float:
    """`asker`'s start tag: its ticket's, given once; else what it gets now, `max(V, last) + 1/weight`, `last`
    being the largest tag among its principal's waiting tickets (V when it has none)."""
    ticket = w.waiting.get(asker.id)
    if ticket is not None:
        return ticket.tag
    last = max((t.tag for t in w.waiting.values() if t.principal == asker.principal), default=w.virtual)
    return max(w.virtual, last) + 1.0 / asker.weight


def older_waiting(w: Window, asker: Asker) -> int:
    """How many calls of other processes still wait ahead of `asker`: a smaller start tag, or an equal one and
    arrived before it."""
    tag = tag_of(w, asker)
    return sum(1 for k, t in w.waiting.items() if k != asker.id and (t.tag, t.arrived_at) < (tag, asker.arrived_at))


def yields(w: Window, now: float, asker: Asker) -> bool:
    """Whether a waiting call of another principal ahead of `asker` is due to look now (`now`: Unix seconds): it
    goes first even while the window has room for both, so the turns follow the tags across processes, not the
    speed of each process's loop. Never for the principal's own calls (a lone principal loses nothing); a ticket
    is due once its next look has come (it expires a grace after it)."""
    tag = tag_of(w, asker)
    return any(
        k != asker.id and t.principal != asker.principal and t.expires_at - TICKET_GRACE_S <= now
        and (t.tag, t.arrived_at) < (tag, asker.arrived_at)
        for k, t in w.waiting.items()
    )  # fmt: skip


def behind_active(w: Window, now: float, asker: Asker) -> bool:
    """Whether another principal that sent a moment ago (`ACTIVE_S`) would go before `asker` with its next call: its
    next tag, `max(V, its last) + 1/weight`, is smaller. Each process shows the window only its head call, so a
    backlogged principal's next call is judged by its last; one that stops sending holds nobody after `ACTIVE_S`."""
    tag = tag_of(w, asker)
    return any(
        p != asker.principal and until > now and max(w.virtual, last) + 1.0 / weight < tag
        for p, (last, weight, until) in w.active.items()
    )


def others_waiting(w: Window, asker: Asker) -> int:
    """How many calls of other processes still wait, older or not."""
    return sum(1 for k in w.waiting if k != asker.id)


def queued_or_paced(w: Window, now: float, asker: Asker) -> Decision | None:
    """Whether calls ahead of it (fair queuing, else first come, first served) or pacing hold `asker` in an open
    window.

    A window with a burst is paced at its burst rate (`burst_held`), never spread thinly over the window.
    """
    if w.remaining is not None and older_waiting(w, asker) >= w.remaining:
        return AwaitAnswers(CAME_FIRST)
    if yields(w, now, asker) or behind_active(w, now, asker):
        return Wait(YIELD_S, YIELDING)
    if burst.allowed(w, ramps(w, asker)) is not None:
        return None
    if not asker.paced and (seconds := pace(w, now, asker, others_waiting(w, asker))) > 0:
        return Wait(seconds, "pacing the last requests of the window", advisory=True)
    return None


def burst_held(w: Window, now: float, asker: Asker) -> Decision | None:
    """Whether the burst holds the next send: paced at the burst rate, or, while finding it, one send at a time."""
    ramp = ramps(w, asker)
    seconds = burst.burst_wait(w, now, ramp, asker.inherited, excluding=w.separate.keys())
    # An endpoint's burst (its own window, or a key's that endpoints were split off from) is probed one send at a
    # time, alone; a key's window that several merely share (maybe one budget, no burst at all) one send per answer.
    alone = asker.own_window or bool(w.separate)
    if (
        burst.ramping(w, ramp)
        and w.in_flight > 0
        and (seconds > 0 or (alone and burst.probes(w, now, asker.inherited, w.separate.keys())))
    ):
        return AwaitAnswers(FINDING_BURST)  # an answer may allow one more at once
    if seconds <= 0:
        return None
    return Wait(seconds, "pacing at the upstream's burst rate")


def ramps(w: Window, asker: Asker) -> bool:
    """Whether an unknown burst is found by ramping up: in an endpoint's own window, or one several share."""
    return asker.own_window or burst.shared(w, asker.bucket)


def wakes_at(decision: Decision, now: float) -> float:
    """When (Unix seconds) a held call looks at the gate again: after its wait, or at once to await answers."""
    # A call yielding to another principal's is due at once: a third principal's call behind it yields to it too.
    return now + (decision.seconds if isinstance(decision, Wait) and decision.why != YIELDING else 0.0)


def ticket_is_fresh(ticket: Ticket | None, wake: float) -> bool:
    """Whether a waiting call's ticket still outlives its next look (at `wake`, Unix seconds) by half the grace."""
    return ticket is not None and ticket.expires_at >= wake + TICKET_GRACE_S / 2


def keep_ticket(
    doc: Doc | None, w: Window, now: float, asker: Asker, decision: Decision
) -> Change[tuple[Decision, Window]]:
    """A held call's ticket: rewritten to expire a grace after its next look, unless fresh and nothing changed."""
    wake = wakes_at(decision, now)
    if ticket_is_fresh(w.waiting.get(asker.id), wake) and doc is not None and not _changed(doc, w):
        return Change((decision, w))  # ticket still fresh and nothing else changed: no write
    w.waiting[asker.id] = Ticket(asker.arrived_at, wake + TICKET_GRACE_S, tag_of(w, asker), asker.principal)
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
    in_period, in_second = reserve(w, now, asker)
    return Change((Send(tracked=True, in_period=in_period, in_second=in_second), w), w.dump(), WINDOW_TTL_S)


def reserve(w: Window, now: float, asker: Asker) -> tuple[int, int]:
    """Count one send of `asker` against the window (in place), in flight until `now + flight_ttl_s` (Unix s).

    Returns how many sends its burst period and its whole second hold with it (`burst.note_send`).
    """
    tag = tag_of(w, asker)
    w.virtual = max(w.virtual, tag)  # fair queuing's V: the tag of the call let out
    w.active[asker.principal] = (tag, asker.weight, now + bounds.ACTIVE_S)
    w.waiting.pop(asker.id, None)
    if w.remaining is not None:
        w.remaining -= 1
    w.sent += 1
    w.sent_by[asker.bucket] = w.sent_by.get(asker.bucket, 0) + 1
    w.flights[asker.id] = now + asker.flight_ttl_s
    w.last_send = now
    return burst.note_send(w, now, asker.bucket, asker.inherited, w.separate.keys())


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


def may_lift(why: str, seen: Window, said: Doc) -> bool:
    """Whether a change another process announced (`said`: the window's sends in flight, budget left, safe
    sends and burst after it) may lift the hold `why` put on a call that last saw the window as `seen`.

    A send reserved is never announced: it lowers the budget and the calls ahead of younger ones alike. Anything
    unreadable may lift it: a needless look costs one decision, a missed one a poll's wait.
    """
    if not said or said.get("forgot"):
        return True
    remaining = said.get("remaining")
    if isinstance(remaining, int) and (seen.remaining is None or remaining > seen.remaining):
        return True
    if said.get("in_flight") == 0:
        # The last answer is in; a budget still spent until a known reset holds on until then, by the clock.
        return not (why == ANSWERS_OUT and remaining == 0 and seen.reset_at is not None)
    if why == FINDING_BURST:
        return said.get("safe") != seen.safe or said.get("burst") != seen.burst
    return why not in (ANSWERS_OUT, CAME_FIRST)


def quiet_for(why: str, seen: Window, now: float) -> float:
    """Seconds from `now` (Unix seconds) a call held for `why` need not look unless told of a change: until the
    window's reset (a new budget), or a send in flight runs out (its process died); 0 when it should keep looking.
    """
    until = seen.reset_at if why in (ANSWERS_OUT, CAME_FIRST) else None
    if why == ANSWERS_OUT and seen.flights:
        soonest = min(seen.flights.values())
        until = soonest if until is None else min(until, soonest)
    return 0.0 if until is None else max(0.0, until - now)
