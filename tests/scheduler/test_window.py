"""The shared window's decisions: a window's whole budget is used, and never more, however answers interleave."""

from __future__ import annotations

from server.scheduler.admit import Asker, Send, decide
from server.scheduler.settle import Answer, settle
from server.state.store import KEEP, Doc

LIMIT = 20


class Books:
    """The shared document, changed only through `decide` and `settle` as the gate does."""

    def __init__(self) -> None:
        self.doc: Doc | None = None
        self.n = 0

    def ask(self, now: float) -> str | None:
        self.n += 1
        asker = Asker(f"a{self.n}", now, probe_first=True, paced=True, queued_here=0, flight_ttl_s=60)
        change = decide(self.doc, now, asker)
        if change.doc is not KEEP:
            self.doc = change.doc  # type: ignore[assignment]
        decision, _ = change.result
        return asker.id if isinstance(decision, Send) else None

    def answer(self, reservation: str, now: float, remaining: int, reset: int) -> None:
        headers = {"x-ratelimit-limit": str(LIMIT), "x-ratelimit-remaining": str(remaining),
                   "x-ratelimit-reset": str(reset)}  # fmt: skip
        change = settle(self.doc, now, Answer.from_headers(reservation, True, headers))
        if change.doc is not KEEP:
            self.doc = change.doc  # type: ignore[assignment]


def learn(books: Books, now: float, reset: int) -> int:
    """Probe until the limit is known; returns how many the upstream counted."""
    counted = 0
    for _ in range(3):
        sent = books.ask(now)
        assert sent is not None
        counted += 1
        books.answer(sent, now, LIMIT - counted, reset)
    return counted


def test_answers_that_lag_behind_the_sends_do_not_shrink_a_fresh_window() -> None:
    """The upstream's `remaining` is stale by the sends still in flight; counting them twice would
    leave part of every window unused (found with several processes sharing one window)."""
    books = Books()
    counted = learn(books, now=0.0, reset=10)
    # The window turns and ten calls go out. Their answers come back through different processes,
    # the last one served settling first: its report already counts the nine still unsettled here.
    flights = [books.ask(10.0) for _ in range(10)]
    assert all(flights)
    for k in [10, *range(1, 10)]:
        books.answer(flights[k - 1] or "", 10.5, LIMIT - k, reset=20)
    more = 0
    while books.ask(10.6) is not None:
        more += 1
    assert more == LIMIT - 10  # the whole window is used, and not one more
    assert counted == 3


def test_a_lower_report_than_our_own_count_means_someone_else_spends_too() -> None:
    books = Books()
    learn(books, now=0.0, reset=10)  # 3 of 20 counted
    first = books.ask(1.0)
    second = books.ask(1.0)
    assert first is not None
    assert second is not None
    # Another client of the same key spent 10 meanwhile: the upstream says 6 left after `first`.
    books.answer(first, 1.1, remaining=6, reset=10)
    granted = 0
    while books.ask(1.2) is not None:
        granted += 1
    assert granted == 5  # 6 left, less `second`, still in flight and maybe not counted yet


def test_sends_in_flight_when_the_window_turns_count_against_the_new_one() -> None:
    books = Books()
    learn(books, now=0.0, reset=10)
    late = [books.ask(9.9) for _ in range(2)]  # may reach the upstream after its window turned
    assert all(late)
    granted = 0
    while books.ask(10.0) is not None:
        granted += 1
    assert granted == LIMIT - 2


def test_a_send_that_the_upstream_counted_in_the_last_window_is_given_back_to_the_new_one() -> None:
    books = Books()
    learn(books, now=0.0, reset=10)
    late = books.ask(9.99)  # out when the window turns: it may count against the new one...
    assert late is not None
    first = books.ask(10.0)
    assert first is not None
    books.answer(late, 10.01, remaining=15, reset=10)  # ...but the upstream counted it in the old one
    books.answer(first, 10.02, remaining=LIMIT - 1, reset=20)  # and only `first` in the new one
    granted = 0
    while books.ask(10.1) is not None:
        granted += 1
    assert granted == LIMIT - 1
