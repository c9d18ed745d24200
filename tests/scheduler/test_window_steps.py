"""The named steps of `decide`: each decision on the shared window, one at a time, on hand-made windows.

Times are Unix seconds picked by hand (NOW); the steps are pure decisions on data, so no clock is needed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from server.scheduler.admit import (
    TICKET_GRACE_S,
    Asker,
    AwaitAnswers,
    Decision,
    Send,
    Wait,
    decide,
    held,
    is_blocked,
    is_learning,
    is_spent,
    is_tracked,
    keep_ticket,
    let_out,
    older_waiting,
    others_waiting,
    pace,
    queued_or_paced,
    reserve,
    ticket_is_fresh,
    turn_if_over,
    wakes_at,
)
from server.scheduler.window import Ticket, Window
from server.state.store import KEEP

NOW = 1_000.0


def asker(
    id: str = "me", *, arrived_at: float = NOW, probe_first: bool = True, paced: bool = False, queued_here: int = 0
) -> Asker:
    return Asker(id, arrived_at, probe_first, paced, queued_here, flight_ttl_s=60.0)


def known(remaining: int, *, limit: int = 20, reset_in: float = 30.0, **fields: Any) -> Window:
    """A window whose limit and reset are known, `reset_in` seconds after NOW; `fields` override the rest."""
    w = Window(limit=limit, remaining=remaining, reset_at=NOW + reset_in, window_s=60.0, answered=3)
    return replace(w, **fields)


# --- what holds every call -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked_until", "expected"),
    [(NOW + 5, True), (NOW, False), (NOW - 5, False), (0.0, False)],
    ids=["penalty-ahead", "penalty-ends-now", "penalty-over", "never-throttled"],
)
def test_a_429_penalty_holds_only_until_its_end(blocked_until: float, expected: bool) -> None:
    assert is_blocked(Window(blocked_until=blocked_until), NOW) is expected


@pytest.mark.parametrize(
    ("remaining", "reset_at", "expected"),
    [
        (0, NOW + 10, True),
        (-1, NOW + 10, True),  # another client overspent: still spent
        (0, None, True),  # spent with no reset known: spent until someone learns more
        (0, NOW, False),  # the reset has come: the budget is whole again
        (0, NOW - 10, False),  # reset in the past
        (1, NOW + 10, False),
        (None, None, False),  # nothing known yet
    ],
)
def test_the_budget_is_spent_when_nothing_is_left_before_the_reset(
    remaining: int | None, reset_at: float | None, expected: bool
) -> None:
    assert is_spent(Window(limit=20, remaining=remaining, reset_at=reset_at), NOW) is expected


@pytest.mark.parametrize(
    ("probe_first", "limit", "answered", "expected"),
    [
        (True, None, 0, True),
        (True, None, 2, True),
        (True, None, 3, False),
        (True, 20, 0, False),
        (False, None, 0, False),
    ],
    ids=["first-call", "two-answers-without-headers", "gave-up-probing", "limit-known", "probing-off"],
)
def test_the_gate_probes_one_at_a_time_only_while_the_limit_is_unknown(
    probe_first: bool, limit: int | None, answered: int, expected: bool
) -> None:
    assert is_learning(Window(limit=limit, answered=answered), asker(probe_first=probe_first)) is expected


@pytest.mark.parametrize(
    ("window", "learning", "expected"),
    [
        (Window(blocked_until=NOW + 7), False, Wait(7.0, "rate limited by the upstream")),
        (known(0, reset_in=12), False, Wait(12.0, "rate limit budget spent")),
        # Both: the penalty first; at its end the spent budget holds the call again until the reset.
        (known(0, reset_in=12, blocked_until=NOW + 3), False, Wait(3.0, "rate limited by the upstream")),
        (
            known(0, reset_in=12, flights={"x": NOW + 60}),
            False,
            AwaitAnswers("waiting for answers to requests already sent"),
        ),
        (
            Window(blocked_until=NOW + 7, flights={"x": NOW + 60}),
            False,
            AwaitAnswers("waiting for answers to requests already sent"),
        ),
        (Window(flights={"probe": NOW + 60}), True, AwaitAnswers("waiting for answers to requests already sent")),
        (Window(), True, None),  # the probe itself
        (known(0, reset_in=-1), False, None),  # reset in the past: not spent
        (Window(limit=20, remaining=0), False, None),  # spent, no reset known: left to the queue
        (known(5, flights={"x": NOW + 60}), False, None),  # budget left: sends in flight hold nobody
    ],
    ids=[
        "penalty",
        "spent",
        "penalty-and-spent",
        "spent-with-flights",
        "penalty-with-flights",
        "probe-out",
        "probe",
        "reset-past",
        "spent-no-reset",
        "budget-left",
    ],
)
def test_the_window_holds_every_call_for_answers_a_penalty_or_a_reset(
    window: Window, learning: bool, expected: Decision | None
) -> None:
    assert held(window, NOW, learning) == expected


# --- the window turning ----------------------------------------------------------------------------


def test_a_window_past_its_reset_turns_and_counts_the_sends_still_in_flight() -> None:
    w = known(0, reset_in=-1, sent=20, flights={"a": NOW + 60, "b": NOW + 60})
    turn_if_over(w, NOW)
    assert (w.sent, w.remaining, w.reset_at) == (2, 18, None)


def test_a_window_turning_at_its_exact_reset_time_turns() -> None:
    w = known(0, reset_in=0.0)
    turn_if_over(w, NOW)
    assert (w.remaining, w.reset_at) == (20, None)


def test_a_window_turning_without_a_known_limit_knows_no_remaining() -> None:
    w = Window(remaining=0, reset_at=NOW - 1)
    turn_if_over(w, NOW)
    assert (w.remaining, w.reset_at, w.sent) == (None, None, 0)


def test_a_window_before_its_reset_does_not_turn() -> None:
    w = known(0, reset_in=5, sent=20)
    turn_if_over(w, NOW)
    assert (w.sent, w.remaining, w.reset_at) == (20, 0, NOW + 5)


# --- arrival order and pacing ------------------------------------------------------------------------


def test_only_other_calls_that_arrived_earlier_count_as_older() -> None:
    w = Window(waiting={"me": Ticket(NOW, NOW + 9, 1.0, ""), "early": Ticket(NOW - 1, NOW + 9, 1.0, ""),
                        "same": Ticket(NOW, NOW + 9, 1.0, ""), "late": Ticket(NOW + 1, NOW + 9, 1.0, "")})  # fmt: skip
    assert older_waiting(w, asker("me")) == 1
    assert others_waiting(w, asker("me")) == 3


@pytest.mark.parametrize(
    ("remaining", "older", "expected"),
    [
        (2, 2, AwaitAnswers("waiting for calls that came first")),
        (0, 0, AwaitAnswers("waiting for calls that came first")),  # spent, no reset known
        (3, 2, None),  # room for the older calls and this one
        (None, 5, None),  # nothing known: arrival order is not enforced
    ],
)
def test_a_call_waits_while_older_calls_of_other_processes_use_up_what_is_left(
    remaining: int | None, older: int, expected: Decision | None
) -> None:
    w = Window(limit=None if remaining is None else 20, remaining=remaining, reset_at=None)
    w.waiting = {f"o{i}": Ticket(NOW - 10 + i, NOW + 9, 1.0, "") for i in range(older)}
    assert queued_or_paced(w, NOW, asker(paced=True)) == expected


def low(**fields: Any) -> Window:
    """A window of 100 with 4 left, resetting in 50 s (a 100 s window), last send 3 s ago."""
    return replace(known(4, limit=100, reset_in=50.0, window_s=100.0, last_send=NOW - 3), **fields)


@pytest.mark.parametrize(
    ("window", "queued_here", "others", "expected"),
    [
        # Margin 10 s (a tenth of the window): (50 - 10) / (4 + 1) = 8 s between sends, 3 s of them passed.
        (low(), 10, 0, 5.0),
        (low(), 0, 4, 5.0),  # the demand may come from other processes
        (low(last_send=NOW - 20), 10, 0, 0.0),  # the interval has passed already
        (low(), 3, 0, 0.0),  # demand 4 fits the 4 left: no pacing
        (low(remaining=10), 50, 0, 40 / 11 - 3),  # exactly a tenth left is low
        (low(remaining=11), 50, 0, 0.0),  # 11 of 100 is above a tenth: not low
        (Window(limit=100, remaining=1), 50, 0, 0.0),  # no reset known
    ],
    ids=[
        "oversubscribed",
        "oversubscribed-elsewhere",
        "interval-passed",
        "demand-fits",
        "a-tenth-left",
        "not-low",
        "reset-unknown",
    ],
)
def test_the_last_sends_of_a_low_budget_are_spread_over_the_window(
    window: Window, queued_here: int, others: int, expected: float
) -> None:
    assert pace(window, NOW, asker(queued_here=queued_here), others) == pytest.approx(expected)


def test_pacing_is_advisory_and_asked_once() -> None:
    decision = queued_or_paced(low(), NOW, asker(queued_here=10))
    assert isinstance(decision, Wait)
    assert decision.seconds == pytest.approx(5.0)
    assert decision.advisory
    assert queued_or_paced(low(), NOW, asker(queued_here=10, paced=True)) is None


# --- tickets of waiting calls -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "expected"),
    [(Wait(3.0, "x"), NOW + 3.0), (Wait(3.0, "x", advisory=True), NOW + 3.0), (AwaitAnswers("x"), NOW)],
)
def test_a_held_call_looks_again_after_its_wait_or_at_once(decision: Decision, expected: float) -> None:
    assert wakes_at(decision, NOW) == expected


@pytest.mark.parametrize(
    ("expires_after_wake", "expected"),
    [(None, False), (TICKET_GRACE_S, True), (TICKET_GRACE_S / 2, True), (TICKET_GRACE_S / 2 - 0.01, False)],
)
def test_a_ticket_is_fresh_while_it_outlives_the_next_look_by_half_the_grace(
    expires_after_wake: float | None, expected: bool
) -> None:
    ticket = None if expires_after_wake is None else Ticket(NOW - 5, NOW + 3 + expires_after_wake, 1.0, "")
    assert ticket_is_fresh(ticket, NOW + 3) is expected


def test_a_fresh_ticket_on_an_unchanged_document_costs_no_write() -> None:
    w = known(0, waiting={"me": Ticket(NOW - 5, NOW + TICKET_GRACE_S, 1.0, "")})
    change = keep_ticket(w.dump(), w, NOW, asker(arrived_at=NOW - 5), AwaitAnswers("x"))
    assert change.doc is KEEP


def test_a_stale_ticket_is_renewed_to_a_grace_past_the_next_look_keeping_its_arrival() -> None:
    w = known(0, waiting={"me": Ticket(NOW - 5, NOW + 0.5, 1.0, "")})
    change = keep_ticket(w.dump(), w, NOW, asker(arrived_at=NOW - 5), Wait(4.0, "x"))
    assert isinstance(change.doc, dict)
    assert change.doc["waiting"]["me"] == [NOW - 5, NOW + 4.0 + TICKET_GRACE_S, 1.0, ""]  # its tag kept


def test_a_first_wait_leaves_a_ticket_with_the_call_arrival_time() -> None:
    w = known(0)
    change = keep_ticket(None, w, NOW, asker(arrived_at=NOW - 2), AwaitAnswers("x"))
    assert isinstance(change.doc, dict)
    assert change.doc["waiting"] == {"me": [NOW - 2, NOW + TICKET_GRACE_S, 1.0, ""]}  # V 0 + 1/weight 1


# --- letting a call out -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "learning", "expected"),
    [
        (Window(), False, False),  # nothing known, nobody waits, nothing out: no bookkeeping
        (Window(), True, True),  # the probe: its answer is awaited by the others
        (Window(limit=20), False, True),
        (Window(remaining=3), False, True),
        (Window(waiting={"x": Ticket(NOW, NOW + 9, 1.0, "")}), False, True),
        (Window(flights={"x": NOW + 60}), False, True),
    ],
    ids=["nothing-known", "probe", "limit-known", "remaining-known", "someone-waits", "someone-out"],
)
def test_a_send_is_counted_whenever_anything_could_count_against_it(
    window: Window, learning: bool, expected: bool
) -> None:
    assert is_tracked(window, learning) is expected


def test_a_tracked_send_is_reserved_in_flight_and_counted_against_the_window() -> None:
    w = known(5, sent=15, waiting={"me": Ticket(NOW - 1, NOW + 9, 1.0, "")})
    change = let_out(w.dump(), w, NOW, asker(), learning=False)
    assert change.result[0] == Send(tracked=True)
    assert (w.remaining, w.sent, w.last_send) == (4, 16, NOW)
    assert w.flights == {"me": NOW + 60.0}  # until now + flight_ttl_s
    assert w.waiting == {}  # its ticket is taken back
    assert change.doc == w.dump()


def test_an_untracked_send_on_a_clean_document_costs_no_write() -> None:
    assert let_out(None, Window(), NOW, asker(), learning=False).doc is KEEP
    assert let_out(Window().dump(), Window(), NOW, asker(), learning=False).doc is KEEP


def test_an_untracked_send_writes_the_document_when_loading_dropped_expired_entries() -> None:
    stale = Window(flights={"gone": NOW - 1}).dump()
    change = decide(stale, NOW, asker(probe_first=False))
    assert change.result[0] == Send(tracked=False)
    assert change.doc == Window().dump()


def test_reserving_with_no_remaining_known_still_counts_the_send() -> None:
    w = Window()
    reserve(w, NOW, asker())
    assert (w.remaining, w.sent, w.in_flight) == (None, 1, 1)


# --- the steps together ---------------------------------------------------------------------------------


def test_nothing_is_admitted_when_remaining_is_zero_before_the_reset() -> None:
    change = decide(known(0, reset_in=8).dump(), NOW, asker())
    assert change.result[0] == Wait(8.0, "rate limit budget spent")
    assert change.result[1].in_flight == 0


def test_a_call_is_admitted_when_remaining_is_zero_but_the_reset_is_in_the_past() -> None:
    change = decide(known(0, reset_in=-1, sent=20).dump(), NOW, asker())
    decision, w = change.result
    assert decision == Send(tracked=True)
    assert (w.remaining, w.sent, w.reset_at) == (19, 1, None)


def test_the_last_place_goes_to_the_call_that_came_first() -> None:
    doc = known(1, waiting={"early": Ticket(NOW - 5, NOW + 9, 1.0, "")}).dump()
    assert decide(doc, NOW, asker("late", arrived_at=NOW - 1)).result[0] == AwaitAnswers(
        "waiting for calls that came first"
    )
    assert decide(doc, NOW, asker("early", arrived_at=NOW - 5)).result[0] == Send(tracked=True)


def test_each_admission_counts_one_more_in_flight_until_the_budget_is_gone() -> None:
    doc = known(3).dump()
    for n in range(1, 4):
        change = decide(doc, NOW, asker(f"c{n}", paced=True))
        decision, w = change.result
        assert decision == Send(tracked=True)
        assert (w.in_flight, w.remaining) == (n, 3 - n)
        doc = w.dump()
    assert decide(doc, NOW, asker("c4", paced=True)).result[0] == AwaitAnswers(
        "waiting for answers to requests already sent"
    )
