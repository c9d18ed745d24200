"""FairQueue: round-robin between sessions, first come first served within one, cancellation-safe."""

from __future__ import annotations

from server.context import serving
from server.scheduler.fair import FairQueue, Ticket


def enqueue(queue: FairQueue, session: str, n: int) -> list[Ticket]:
    with serving(session):
        return [queue.enqueue() for _ in range(n)]


def grant_order(queue: FairQueue, tickets: dict[Ticket, str]) -> list[str]:
    order = []
    while queue.waiting:
        queue.release()
        granted = next(t for t in tickets if t.granted.is_set() and tickets[t] != "done")
        order.append(tickets[granted])
        tickets[granted] = "done"
    return order


def test_a_busy_session_cannot_starve_another() -> None:
    queue = FairQueue()
    assert queue.try_take()
    busy = enqueue(queue, "A", 4)
    quiet = enqueue(queue, "B", 1)
    names = {t: f"A{i}" for i, t in enumerate(busy, 1)} | {quiet[0]: "B1"}
    assert grant_order(queue, names) == ["A1", "B1", "A2", "A3", "A4"]


def test_a_withdrawn_ticket_is_skipped_and_a_granted_one_passes_its_turn_on() -> None:
    queue = FairQueue()
    assert queue.try_take()
    first, second, third = enqueue(queue, "A", 3)
    queue.withdraw(second)
    queue.release()
    assert first.granted.is_set()
    queue.withdraw(first)  # cancelled after being granted: the turn moves on
    assert third.granted.is_set()
    queue.release()
    assert queue.try_take()  # nobody left: the next caller goes straight in
