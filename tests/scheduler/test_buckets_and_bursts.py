"""The pure steps behind per-endpoint budgets and per-second bursts: which evidence splits a bucket, how a
burst is paced, found and forgotten."""

from __future__ import annotations

import pytest

from server.scheduler import burst
from server.scheduler.admit import Asker, AwaitAnswers, Send, decide
from server.scheduler.buckets import Report, bucket_of, key_part, latest, shows_own_budget
from server.scheduler.settle import Answer, learn_report, settle
from server.scheduler.window import Window

RESET = 1_000.0


@pytest.mark.parametrize(
    ("method", "path", "bucket"),
    [
        ("get", "/api/v1/snapshots/0b9e8d7c-1111-4a2b-9c3d-123456789abc", "GET /api/v1/snapshots/{id}"),
        ("POST", "/api/v1/snapshots", "POST /api/v1/snapshots"),
        ("GET", "/api/v1/snapshots/search", "GET /api/v1/snapshots/search"),
        ("DELETE", "/items/42/parts/7", "DELETE /items/{id}/parts/{id}"),
        ("GET", "", "GET /"),
    ],
)
def test_a_request_s_bucket_is_its_method_and_route_without_ids(method: str, path: str, bucket: str) -> None:
    assert bucket_of(method, path) == bucket
    assert key_part(bucket).replace("_", "").isalnum()


def report(bucket: str, remaining: int, answers_at: int, *, reset: float = RESET, limit: int | None = 30) -> Report:
    return Report(bucket, remaining, reset, limit, answers_at)


@pytest.mark.parametrize(
    ("others", "remaining", "reset", "limit", "answers_at_send", "split"),
    [
        # another bucket said 29 left before this request left: one shared budget leaves at most 28
        ([report("W", 29, 1)], 29, RESET, 30, 1, True),
        ([report("W", 29, 1)], 28, RESET, 30, 1, False),  # consistent with one budget
        ([report("W", 29, 2)], 29, RESET, 30, 1, False),  # that report came after this request left
        ([report("W", 29, 1)], 29, RESET + 60, 30, 1, False),  # another window: says nothing
        ([report("W", 29, 1)], 5, RESET, 60, 1, True),  # another limit: another budget
        ([report("W", 29, 1, limit=None)], 5, RESET, 60, 1, False),
        ([report("S", 29, 1)], 29, RESET, 30, 1, False),  # its own earlier report is no evidence
        ([], 29, RESET, 30, 0, False),
    ],
)
def test_a_bucket_is_split_off_only_on_evidence(
    others: list[Report], remaining: int, reset: float, limit: int, answers_at_send: int, split: bool
) -> None:
    assert shows_own_budget(others, "S", remaining, reset, limit, answers_at_send) is split


def test_each_bucket_keeps_only_its_latest_report_and_few_buckets_are_kept() -> None:
    reports: dict[str, Report] = {}
    for n in range(20):
        reports = latest(reports, report(f"B{n % 18}", 30 - n, n))
    assert len(reports) == 16
    assert reports["B1"].answers_at == 19


def window(limit: int | None = 30, window_s: float | None = 60.0, **kw: object) -> Window:
    return Window(limit=limit, window_s=window_s, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("w", "ramp", "allowed"),
    [
        (window(30, 60.0), False, 5),  # the rate-limits page: 30 a minute, 5 a second
        (window(60, 60.0), False, 10),
        (window(30, 3600.0), False, None),  # an hourly window carries no burst
        (window(40, 60.0), False, None),  # a limit the page does not name, in the key's window: none assumed
        (window(40, 60.0, safe=3), True, 4),  # an endpoint's own window ramps: one beyond the safe
        (window(40, 60.0, burst=2, burst_until=2e9), True, 2),  # learnt from a 429
        (window(None, None), True, None),  # nothing known yet
    ],
)
def test_how_many_sends_a_burst_period_lets_out(w: Window, ramp: bool, allowed: int | None) -> None:
    assert burst.allowed(w, ramp) == allowed


def test_sends_are_paced_at_the_burst_rate_with_a_margin() -> None:
    w = window(30, 60.0)
    for t in (100.0, 100.1, 100.2, 100.3, 100.4):
        burst.note_send(w, t, "POST /x")
    assert burst.burst_wait(w, 100.5, ramp=False) == pytest.approx(100.0 + burst.BURST_S + burst.MARGIN_S - 100.5)
    assert burst.burst_wait(w, 101.2, ramp=False) == 0.0


def test_sends_still_counted_in_the_key_s_window_count_for_an_endpoint_split_off() -> None:
    own = window(30, 60.0)
    inherited = (100.0, 100.1, 100.2, 100.3, 100.4)
    assert burst.burst_wait(own, 100.5, ramp=True, inherited=inherited) > 0
    assert burst.burst_wait(own, 100.5, ramp=True) == 0.0


@pytest.mark.parametrize(
    ("known", "in_period", "learnt"),
    [(None, 4, 3), (5, 4, 3), (5, 9, 5), (None, 1, 1), (2, 2, 1)],
)
def test_a_429_with_room_sets_the_burst_just_below_what_was_out(known: int | None, in_period: int, learnt: int) -> None:
    w = window(40 if known is None else 30, 60.0, burst=known, burst_until=2e9 if known else 0.0)
    if known is not None and known != 5:
        w.limit = 40
    burst.note_burst_refusal(w, in_period, now=100.0)
    assert w.burst == learnt
    assert w.burst_until == 100.0 + burst.LEARNT_FOR_S


def test_a_learnt_burst_is_forgotten_after_a_while_and_found_again() -> None:
    w = window(40, 60.0, burst=1, burst_until=700.0, safe=3)
    burst.forget_old_burst(w, now=699.0)
    assert w.burst == 1
    burst.forget_old_burst(w, now=700.0)
    assert w.burst is None
    assert w.safe == 0


@pytest.mark.parametrize(
    ("windows", "window_s", "average"),
    [
        (0, None, 1),  # nothing known
        (1, 1.0, 1),  # a first answer late in its window reads it as a second long: not trusted (12 a second)
        (1, 5.0, 1),  # the first window's reading is a bound, even when it is right
        (2, 5.0, 2),  # a turn was seen: the length is known, 12 over 5 s
        (2, 60.0, 1),
    ],
)
def test_the_average_rate_counts_only_a_length_known_from_a_turn(
    windows: int, window_s: float | None, average: int
) -> None:
    assert burst.average(window(12, window_s, windows=windows)) == average


def test_a_window_turn_seen_makes_its_length_known() -> None:
    w = window(12, None)
    learn_report(w, 1_004.2, 11, 1_005.0)  # late in the first window: 0.8 s to its reset, read as 1 s
    assert (w.window_s, burst.length_known(w)) == (1.0, False)
    learn_report(w, 1_005.01, 11, 1_010.0)  # the next window's first answer
    assert burst.length_known(w)
    assert burst.average(w) == 2


SNAP, SEARCH = "POST /snapshots", "GET /snapshots/search"


@pytest.mark.parametrize(
    ("fields", "shared"),
    [
        ({}, False),  # a fresh window
        ({"sent_by": {SNAP: 3}}, False),  # one endpoint alone: sends as before
        ({"reports": {SNAP: Report(SNAP, 5, RESET, 12, 1)}}, False),
        ({"sent_by": {SEARCH: 1}}, True),  # another endpoint's sends
        ({"reports": {SEARCH: Report(SEARCH, 5, RESET, 12, 1)}}, True),  # another endpoint's answers
        ({"separate": {SEARCH: 1.0}}, True),  # one was split off: the upstream keeps budgets per endpoint
    ],
)
def test_a_window_is_shared_when_another_endpoint_sends_through_it(fields: dict[str, object], shared: bool) -> None:
    w = window(12, 5.0, **fields)
    assert burst.shared(w, SNAP) is shared
    assert (burst.allowed(w, ramp=burst.shared(w, SNAP)) is not None) is shared  # the unknown burst is ramped


@pytest.mark.parametrize(
    ("before", "now", "counts"),
    [
        ((), 100.2, (1, 1)),
        ((100.1, 100.15), 100.2, (3, 3)),  # all in one whole second
        ((99.5, 99.9, 100.05), 100.2, (4, 2)),  # the second before counts for pacing, not for what a 429 teaches
        ((99.1,), 100.2, (1, 1)),  # out of the period
    ],
)
def test_a_send_counts_its_period_and_its_whole_second(
    before: tuple[float, ...], now: float, counts: tuple[int, int]
) -> None:
    w = window(12, 5.0)
    for t in before:
        burst.note_send(w, t, SNAP)
    assert burst.note_send(w, now, SNAP) == counts


def test_sends_inherited_and_split_off_count_as_the_burst_pacing_counts_them() -> None:
    w = window(12, 5.0)
    burst.note_send(w, 100.1, SEARCH)
    assert burst.note_send(w, 100.2, SNAP, inherited=(100.15,), excluding={SEARCH}) == (2, 2)


@pytest.mark.parametrize(
    ("reported", "remaining"),
    [
        (8, 8),  # the upstream did not count the refused send: its place is back (8 of 12 left)
        (7, 6),  # it did: the report takes the place back (less the send still in flight)
        # either way the burst is what its whole second held less one (8 in the period: 3 of the second before)
    ],
)
def test_a_429_gives_its_place_back_unless_the_report_says_it_was_counted(reported: int, remaining: int) -> None:
    now = 1_780_000_001.0
    doc = window(12, 5.0, remaining=7, sent=5, reset_at=now + 4, windows=2, flights={"r": now + 6, "o": now + 6})
    headers = {"x-ratelimit-limit": "12", "x-ratelimit-remaining": str(reported), "x-ratelimit-reset": str(now + 4)}
    answer = Answer.from_headers("r", True, headers, status=429, throttled_for=1.0, in_period=8, in_second=5)
    w = settle(doc.dump(), now, answer).result
    assert (w.remaining, w.burst) == (remaining, 4)


@pytest.mark.parametrize(
    ("sends", "flights", "now", "decision"),
    [
        # 4 went through without a 429; a 5th in the period is a probe of the burst, and goes only alone
        ((99.9, 100.0, 100.1, 100.2), {"a": 200.0}, 100.3, AwaitAnswers),
        ((99.9, 100.0, 100.1, 100.2), {}, 100.3, Send),
        ((99.3, 99.9, 100.0, 100.1, 100.2), {"a": 200.0}, 100.36, AwaitAnswers),  # one left the period: a probe still
        ((100.0, 100.1), {"a": 200.0}, 100.3, Send),  # within what went through without a 429
    ],
)
def test_a_probe_of_an_unknown_burst_goes_only_with_nothing_else_in_flight(
    sends: tuple[float, ...], flights: dict[str, float], now: float, decision: type
) -> None:
    w = window(40, 60.0, safe=4, windows=2, remaining=30, reset_at=150.0, flights=flights)
    for t in sends:
        burst.note_send(w, t, SNAP)
    asker = Asker("me", 100.0, probe_first=False, paced=False, queued_here=0, flight_ttl_s=6.0, own_window=True,
                  bucket=SNAP)  # fmt: skip
    assert type(decide(w.dump(), now, asker).result[0]) is decision


@pytest.mark.parametrize(
    ("in_period", "in_second", "safe"),
    [(6, 3, 3), (4, 4, 4), (2, 0, 2)],  # the whole second proves what went through; an older count, its period
)
def test_an_answer_without_a_429_proves_what_its_whole_second_held(in_period: int, in_second: int, safe: int) -> None:
    now = 1_780_000_001.0
    doc = window(12, 5.0, remaining=7, sent=5, reset_at=now + 4, windows=2, flights={"r": now + 6})
    headers = {"x-ratelimit-limit": "12", "x-ratelimit-remaining": "7", "x-ratelimit-reset": str(now + 4)}
    answer = Answer.from_headers("r", True, headers, status=200, in_period=in_period, in_second=in_second)
    assert settle(doc.dump(), now, answer).result.safe == safe
