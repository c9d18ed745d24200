"""The named steps of `settle` and `Window.load`: what an answer (or its absence) teaches the shared window.

Times are Unix seconds picked by hand (NOW); the steps are pure decisions on data, so no clock is needed.
"""

from __future__ import annotations

import pytest

from server.scheduler.admit import Asker, Wait, decide
from server.scheduler.settle import (
    Answer,
    give_back_unsent,
    learn_report,
    reports_current_window,
    settle,
    starts_newer_window,
)
from server.scheduler.window import Ticket, Window
from server.state.store import KEEP

NOW = 1_000.0


@pytest.mark.parametrize(
    ("tracked", "sent", "expected"),
    [
        (True, False, (4, 6)),  # never left: its place is given back
        (True, True, (5, 5)),  # may have left: the upstream may have counted it, so it stays spent
        (False, False, (5, 5)),  # never counted, nothing to give back
    ],
    ids=["unsent", "maybe-sent", "untracked"],
)
def test_only_a_counted_request_that_never_left_gives_its_place_back(
    tracked: bool, sent: bool, expected: tuple[int, int]
) -> None:
    w = Window(limit=10, remaining=5, sent=5)
    give_back_unsent(w, Answer("r", tracked, answered=False, sent=sent))
    assert (w.sent, w.remaining) == expected


def test_giving_back_never_counts_below_zero_sends_nor_invents_a_remaining() -> None:
    w = Window(sent=0)
    give_back_unsent(w, Answer("r", tracked=True, answered=False, sent=False))
    assert (w.sent, w.remaining) == (0, None)


@pytest.mark.parametrize(("reset", "expected"), [(1_010, True), (1_001, True), (1_000, False), (990, False)])
def test_a_report_from_a_window_already_over_says_nothing_about_the_current_one(reset: int, expected: bool) -> None:
    assert reports_current_window(reset, NOW) is expected


@pytest.mark.parametrize(
    ("reset_at", "reset", "expected"),
    [
        (None, 1_030, True),
        (1_030.0, 1_031, True),
        (1_030.0, 1_030, False),
        (1_029.6, 1_030, False),
        (1_030.0, 1_020, False),
    ],
    ids=["first-reset", "later", "same", "within-half-a-second", "earlier"],
)
def test_a_report_starts_a_newer_window_only_when_its_reset_is_later_by_over_half_a_second(
    reset_at: float | None, reset: int, expected: bool
) -> None:
    assert starts_newer_window(Window(reset_at=reset_at), reset) is expected


def test_the_first_report_teaches_the_window_length_and_trusts_it_less_the_sends_in_flight() -> None:
    w = Window(flights={"a": NOW + 60, "b": NOW + 60})
    learn_report(w, NOW, remaining=10, reset=1_030)
    assert (w.window_s, w.reset_at, w.remaining) == (30.0, 1_030.0, 8)


def test_a_window_length_is_at_least_one_second() -> None:
    w = Window()
    learn_report(w, 1_029.9, remaining=10, reset=1_030)
    assert w.window_s == 1.0


def test_a_report_of_a_window_we_did_not_see_turn_counts_this_send_and_those_in_flight_in_it() -> None:
    w = Window(limit=20, remaining=0, reset_at=1_000.0, window_s=30.0, sent=20, flights={"a": NOW + 60})
    learn_report(w, 1_000.2, remaining=18, reset=1_030)
    assert (w.sent, w.reset_at, w.window_s) == (2, 1_030.0, 30.0)
    assert w.remaining == 18  # our count (20 - 2) and the report agree


def test_a_report_of_the_same_window_lower_than_our_count_means_someone_else_spends() -> None:
    w = Window(limit=20, remaining=10, reset_at=1_030.0, sent=10, flights={"a": NOW + 60})
    learn_report(w, NOW, remaining=6, reset=1_030)
    assert w.remaining == 5  # the pessimistic reading: 6 less the one still in flight


def test_a_report_of_the_same_window_at_or_above_our_count_keeps_our_count() -> None:
    w = Window(limit=20, remaining=10, reset_at=1_030.0, sent=10, flights={"a": NOW + 60})
    learn_report(w, NOW, remaining=12, reset=1_030)
    assert w.remaining == 10  # a stale report gives nothing back


def test_a_rate_limit_429_holds_every_call_until_its_wait_is_over() -> None:
    change = settle(None, NOW, Answer("r", tracked=True, answered=True, throttled_for=12.0))
    assert change.result.blocked_until == NOW + 12.0
    asker = Asker("next", NOW + 1, probe_first=True, paced=False, queued_here=0, flight_ttl_s=60)
    decision, _ = decide(change.doc, NOW + 1, asker).result  # type: ignore[arg-type]
    assert decision == Wait(11.0, "rate limited by the upstream")


def test_a_shorter_penalty_never_shortens_a_longer_one() -> None:
    doc = Window(blocked_until=NOW + 30).dump()
    change = settle(doc, NOW, Answer("r", tracked=True, answered=True, throttled_for=5.0))
    assert change.result.blocked_until == NOW + 30


def test_an_answer_frees_its_reservation_and_counts_as_answered() -> None:
    doc = Window(flights={"r": NOW + 60, "other": NOW + 60}).dump()
    w = settle(doc, NOW, Answer("r", tracked=True, answered=True)).result
    assert (set(w.flights), w.answered) == ({"other"}, 1)


def test_an_untracked_answer_without_rate_limit_headers_costs_no_write() -> None:
    assert settle(None, NOW, Answer("r", tracked=False, answered=True)).doc is KEEP


@pytest.mark.parametrize(
    "doc",
    [None, {"limit": "many"}, {"waiting": {"t": [1.0]}}, {"last_send": "yesterday"}],
    ids=["absent", "bad-limit", "short-ticket", "bad-time"],
)
def test_an_absent_or_unreadable_document_reads_as_a_fresh_window(doc: dict[str, object] | None) -> None:
    assert Window.load(doc, NOW) == Window()


def test_loading_drops_reservations_and_tickets_that_expired() -> None:
    doc = Window(
        flights={"live": NOW + 1, "gone": NOW},
        waiting={"live": Ticket(0.0, NOW + 1, 1.0, "a"), "gone": Ticket(0.0, NOW, 1.0, "a")},
    ).dump()
    w = Window.load(doc, NOW)
    assert (set(w.flights), set(w.waiting)) == ({"live"}, {"live"})
