"""The pure steps behind per-endpoint budgets and per-second bursts: which evidence splits a bucket, how a
burst is paced, found and forgotten."""

from __future__ import annotations

import pytest

from server.scheduler import burst
from server.scheduler.buckets import Report, bucket_of, key_part, latest, shows_own_budget
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
