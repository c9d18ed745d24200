"""Rate-limit figures are the upstream's words: each oddity the contract lists is bounded before it is kept,
and a 429 whose wait is longer than any window is told apart as a spent quota."""

from __future__ import annotations

import httpx2
import pytest

from server.httpio import (
    RateLimitReading,
    plausible_rate_limit,
    quota_threshold,
    read_rate_limit,
    retry_after,
    spent_quota,
)

NOW = 1_780_000_000.0
RESET = NOW + 1800  # half an hour ahead: a plausible window's end
DAY = 86_400.0


@pytest.mark.parametrize(
    ("oddity", "limit", "remaining", "reset", "expected"),
    [
        ("as documented", 100, 40, RESET, RateLimitReading(100, 40, RESET)),
        ("reset in milliseconds", 100, 40, RESET * 1000, RateLimitReading(100, 40, RESET)),
        ("reset as seconds from now", 100, 40, 1800, RateLimitReading(100, 40, RESET)),
        ("reset in the past", 100, 40, NOW - 60, RateLimitReading(100, 40, None)),
        ("reset at this very second", 100, 40, NOW, RateLimitReading(100, 40, None)),
        ("reset years ahead", 100, 40, NOW + 5 * 365 * DAY, RateLimitReading(100, 40, None, NOW + 5 * 365 * DAY)),
        ("reset just over a day ahead", 100, 0, NOW + DAY + 1, RateLimitReading(100, 0, None, NOW + DAY + 1)),
        ("reset a day ahead exactly", 100, 0, NOW + DAY, RateLimitReading(100, 0, NOW + DAY)),
        ("remaining above the limit", 100, 150, RESET, RateLimitReading(100, 100, RESET)),
        ("remaining below zero", 100, -5, RESET, RateLimitReading(100, 0, RESET)),
        ("limit zero", 0, 40, RESET, RateLimitReading()),
        ("limit below zero", -1, 40, RESET, RateLimitReading()),
        ("no limit header", None, 40, RESET, RateLimitReading(None, 40, RESET)),
        ("no headers", None, None, None, RateLimitReading()),
        ("not finite", float("nan"), float("inf"), float("-inf"), RateLimitReading()),
        ("the measured lockout", 100, 0, 1_794_170_369_266, RateLimitReading(100, 0, None, 1_794_170_369.266)),
    ],
)
def test_every_header_oddity_is_bounded_before_it_is_kept(
    oddity: str,
    limit: float | None,
    remaining: float | None,
    reset: float | None,
    expected: RateLimitReading,
) -> None:
    assert plausible_rate_limit(limit, remaining, reset, NOW) == expected, oddity


def test_headers_that_are_not_numbers_are_absent() -> None:
    headers = {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "", "X-RateLimit-Reset": "soon"}
    assert read_rate_limit(httpx2.Headers(headers), NOW) == RateLimitReading()
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "7", "X-RateLimit-Reset": str(int(RESET * 1000))}
    assert read_rate_limit(httpx2.Headers(headers), NOW) == RateLimitReading(100, 7, RESET)


def answer(status: int, headers: dict[str, str] | None = None, body: object = None) -> httpx2.Response:
    request = httpx2.Request("GET", "https://neuralsnap.test/api/v1/snapshots/search")
    return httpx2.Response(status, headers=headers, json=body, request=request)


THREE_DAYS = 3 * DAY


@pytest.mark.parametrize(
    ("said_by", "headers", "body"),
    [
        ("Retry-After", {"Retry-After": str(int(THREE_DAYS))}, {"error": "Search quota exceeded."}),
        ("retry_after", None, {"error": "Quota exceeded.", "code": "RATE_LIMIT_EXCEEDED", "retry_after": THREE_DAYS}),
        ("retry_after", None, {"error": {"code": "X", "message": "m", "details": {"retry_after": THREE_DAYS}}}),
        ("message", None, {"error": f"Rate limit exceeded. Try again in {int(THREE_DAYS)} seconds."}),
        ("X-RateLimit-Reset", {"X-RateLimit-Limit": "100", "X-RateLimit-Reset": str(int(NOW + THREE_DAYS))}, {}),
    ],
)
def test_a_429_with_a_wait_of_days_is_a_spent_quota_whoever_says_it(
    said_by: str, headers: dict[str, str] | None, body: object
) -> None:
    verdict = spent_quota(answer(429, headers, body), NOW)
    assert verdict is not None
    assert verdict.said_by == said_by
    assert verdict.renews_at == pytest.approx(NOW + THREE_DAYS)
    assert retry_after(answer(429, headers, body), NOW) is None  # never a wait to obey


def test_a_429_within_an_hour_is_a_rate_limit_and_a_longer_window_raises_the_bar() -> None:
    hourly = answer(429, {"Retry-After": "3600"}, {"error": "Rate limit exceeded."})
    assert spent_quota(hourly, NOW) is None
    assert retry_after(hourly, NOW) == 3600
    two_hours = answer(429, {"Retry-After": "7200"}, {})
    assert spent_quota(two_hours, NOW) is not None  # longer than an hour's window with its margin
    assert spent_quota(two_hours, NOW, longest_window_s=7200) is None  # a window that long was seen
    assert quota_threshold(None) == quota_threshold(60.0) > 3600
    assert spent_quota(answer(200, {"Retry-After": str(int(THREE_DAYS))}), NOW) is None
    assert spent_quota(answer(429, None, {"error": "Too many requests."}), NOW) is None  # no wait named


def test_a_wait_of_years_is_a_broken_figure_not_a_quota() -> None:
    years = answer(429, {"Retry-After": str(int(5 * 365 * DAY))})
    assert spent_quota(years, NOW) is None
    assert retry_after(years, NOW) is None


def test_the_body_retry_after_is_a_rate_limit_wait_too() -> None:
    assert retry_after(answer(429, None, {"error": "Slow down.", "retry_after": 12}), NOW) == 12
