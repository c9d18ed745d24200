"""Turns at a gate within one process: start-time fair queuing between principals, first come first served within one.

Each call that must wait gets, once, a start tag `max(V, the principal's last tag) + 1/weight` (`context.turn()`
names the principal and its weight) and the turn goes to the smallest tag; on a tie, a principal that had nothing
waiting nor the turn goes first (it did not share the turns before), then the older call. V becomes the tag of the call
granted. A busy principal cannot starve the others: with A's many calls queued and B's one, B's goes next, not
last; with weights 1:3 both backlogged, B gets 3 turns of every 4. A lone principal loses nothing (a free turn
is taken at once). The shared window document orders the heads of all processes the same way (`admit.py`), so
the order holds across processes and replicas too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import anyio

from server import context
from server.context import Turn


@dataclass(eq=False)
class Ticket:
    """One call's place in the queue: `granted` is set when its turn comes."""

    turn: Turn
    tag: float
    order: int  # arrival, for ties
    fresh: bool  # its principal had nothing waiting nor the turn: first among equal tags
    granted: anyio.Event = field(default_factory=anyio.Event)


class FairQueue:
    """The turns at one gate within a process: one at a time, the smallest start tag first."""

    def __init__(self) -> None:
        self._waiting: dict[Ticket, None] = {}  # in arrival order
        self._last: dict[str, float] = {}  # each waiting principal's last tag (dropped once at or below V)
        self._virtual = 0.0  # V: the tag of the last call granted
        self._busy = False
        self._holder: str | None = None  # the principal whose call holds the turn: it is not fresh
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def try_take(self) -> bool:
        """Take the turn at once when nobody holds or waits for it; False means enqueue and wait."""
        if self._busy or self._waiting:
            return False
        self._busy = True
        # Taken at once, it is granted at once: it has its tag and moves V like any granted call, so a principal
        # whose calls keep passing untouched still takes its turns after another's.
        turn = context.turn()
        self._virtual = max(self._virtual, self._last.get(turn.key, self._virtual)) + 1.0 / turn.weight
        self._holder = turn.key
        return True

    def enqueue(self) -> Ticket:
        """Join the queue as the running call's principal (`context.turn()`); wait on the ticket's `granted`."""
        turn = context.turn()
        tag = max(self._virtual, self._last.get(turn.key, self._virtual)) + 1.0 / turn.weight
        self._last[turn.key] = tag
        fresh = turn.key != self._holder and all(t.turn.key != turn.key for t in self._waiting)
        ticket = Ticket(turn, tag, next(self._arrivals), fresh=fresh)
        self._waiting[ticket] = None
        return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """Leave the queue (a cancelled or timed-out call); a turn already granted is passed on."""
        if ticket.granted.is_set():
            self.release()
            return
        self._waiting.pop(ticket, None)

    def release(self) -> None:
        """End the current turn and grant the next: the smallest start tag, then a fresh principal, then the older."""
        if not self._waiting:
            self._busy, self._holder = False, None
            return
        ticket = min(self._waiting, key=lambda t: (t.tag, not t.fresh, t.order))
        del self._waiting[ticket]
        self._virtual = max(self._virtual, ticket.tag)
        self._holder = ticket.turn.key
        # Bounded by the principals waiting: a last tag at or below V no longer moves anyone's next tag.
        self._last = {k: v for k, v in self._last.items() if v > self._virtual}
        ticket.granted.set()
