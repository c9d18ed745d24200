"""Turns at a gate, handed out round-robin between sessions and first come, first served within one.

One busy client cannot starve the others: with calls queued from sessions A (many) and
B (one), B's call goes second, not last.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

import anyio

from server import context


@dataclass(eq=False)
class Ticket:
    """One call's place in the queue: `granted` is set when its turn comes."""

    session: Hashable
    granted: anyio.Event = field(default_factory=anyio.Event)


class FairQueue:
    """The turns at one gate within a process: one at a time, round-robin between sessions."""

    def __init__(self) -> None:
        self._waiting: OrderedDict[Hashable, deque[Ticket]] = OrderedDict()
        self._busy = False

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def try_take(self) -> bool:
        """Take the turn at once when nobody holds or waits for it; False means enqueue and wait."""
        if self._busy or self._waiting:
            return False
        self._busy = True
        return True

    def enqueue(self) -> Ticket:
        """Join the queue in the running call's session (`context.session()`); wait on the ticket's `granted`.

        Outside a tool call every caller shares one anonymous session. What a session is today: see
        `server.context`, where the key is kept (one per request, not per client, in the SDK 2.3).
        """
        ticket = Ticket(context.session())
        self._waiting.setdefault(ticket.session, deque()).append(ticket)
        return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """Leave the queue (a cancelled or timed-out call); a turn already granted is passed on."""
        if ticket.granted.is_set():
            self.release()
            return
        queue = self._waiting.get(ticket.session)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self._waiting[ticket.session]

    def release(self) -> None:
        """End the current turn and grant the next: the oldest call of the next session in the rotation."""
        if not self._waiting:
            self._busy = False
            return
        session, queue = next(iter(self._waiting.items()))
        ticket = queue.popleft()
        del self._waiting[session]
        if queue:
            self._waiting[session] = queue  # to the back of the rotation
        ticket.granted.set()
