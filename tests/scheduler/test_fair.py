"""FairQueue: start-time fair queuing between principals, first come first served within one, cancellation-safe.

The queue is given whom each call waits as (`context.Turn`); what the MCP layer gives it over each transport (a
principal per team entry, per MCP session, per process, never per request) is tested through real transports in
tests/test_fairness.py, where a busy principal's 100 calls and another's one go through a real server.
"""

from __future__ import annotations

import pytest

from server.context import Turn, serving
from server.scheduler.fair import FairQueue, Ticket


def enqueue(queue: FairQueue, who: str, n: int, weight: float = 1.0) -> list[Ticket]:
    with serving(Turn(who, who, weight)):
        return [queue.enqueue() for _ in range(n)]


def grant_order(queue: FairQueue, tickets: dict[Ticket, str]) -> list[str]:
    order = []
    while queue.waiting:
        queue.release()
        granted = next(t for t in tickets if t.granted.is_set() and tickets[t] != "done")
        order.append(tickets[granted])
        tickets[granted] = "done"
    return order


def test_a_busy_principal_cannot_starve_another() -> None:
    queue = FairQueue()
    assert queue.try_take()
    busy = enqueue(queue, "A", 4)
    quiet = enqueue(queue, "B", 1)
    names = {t: f"A{i}" for i, t in enumerate(busy, 1)} | {quiet[0]: "B1"}
    assert grant_order(queue, names) == ["A1", "B1", "A2", "A3", "A4"]


def test_a_principal_arriving_late_goes_next_not_last() -> None:
    queue = FairQueue()
    assert queue.try_take()
    busy = enqueue(queue, "A", 6)
    queue.release()  # A1 granted and sent; A2..A6 wait
    names = {t: f"A{i}" for i, t in enumerate(busy, 1)}
    names[busy[0]] = "done"
    late = enqueue(queue, "B", 1)
    names[late[0]] = "B1"
    assert grant_order(queue, names)[:1] == ["B1"]


@pytest.mark.parametrize(("weight_a", "weight_b", "b_share"), [(1, 1, 0.5), (1, 3, 0.75), (3, 1, 0.25), (1, 9, 0.9)])
def test_backlogged_principals_share_the_turns_by_weight(weight_a: float, weight_b: float, b_share: float) -> None:
    queue = FairQueue()
    assert queue.try_take()
    tickets = {t: "A" for t in enqueue(queue, "A", 200, weight_a)}
    tickets |= {t: "B" for t in enqueue(queue, "B", 200, weight_b)}
    first = grant_order(queue, tickets)[:100]
    assert first.count("B") / 100 == pytest.approx(b_share, abs=0.02)


def test_a_lone_principal_goes_in_arrival_order() -> None:
    queue = FairQueue()
    assert queue.try_take()
    tickets = enqueue(queue, "A", 5, weight=3)
    assert grant_order(queue, {t: f"A{i}" for i, t in enumerate(tickets, 1)}) == ["A1", "A2", "A3", "A4", "A5"]


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
