"""The named steps of `ScheduledTransport.handle_async_request`: which failures are retried, which never are.

The rule under test: a request that may have been processed is never sent again when its method spends
words or creates data (POST, PUT, PATCH, DELETE); reads are retried; a request that provably never left is
retried whatever its method.
"""

from __future__ import annotations

import httpx2
import pytest

from server.httpio import UNSAFE_METHODS, RequestNotSent
from server.scheduler.transport import (
    MAX_THROTTLES,
    is_rate_limit,
    proves_unsent,
    reports_not_sent,
    retries_failure,
    retries_throttle,
    throttle_s,
)

ATTEMPTS = 4
UNSENT_FAILURES = [
    httpx2.ConnectError("refused"),
    httpx2.ConnectTimeout("connect timeout"),
    httpx2.PoolTimeout("pool timeout"),
    RequestNotSent("stale pooled connection"),
]
OTHER_FAILURES = [
    httpx2.ReadTimeout("read timeout"),
    httpx2.WriteError("broken pipe"),
    httpx2.RemoteProtocolError("server disconnected"),
    httpx2.ReadError("connection reset"),
]


def safe(method: str) -> bool:
    """As the transport reads a method: only the unsafe ones may have spent or created something."""
    return method not in UNSAFE_METHODS


@pytest.mark.parametrize("exc", UNSENT_FAILURES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("written", [False, True])
def test_a_connect_failure_proves_the_request_never_left_however_far_the_trace_got(
    exc: httpx2.TransportError, written: bool
) -> None:
    assert proves_unsent(exc, written)


@pytest.mark.parametrize("exc", OTHER_FAILURES, ids=lambda e: type(e).__name__)
def test_a_failure_after_the_request_was_written_whole_may_have_been_processed(exc: httpx2.TransportError) -> None:
    assert not proves_unsent(exc, written=True)


@pytest.mark.parametrize("exc", OTHER_FAILURES, ids=lambda e: type(e).__name__)
def test_a_failure_before_the_request_was_written_whole_proves_it_never_left(exc: httpx2.TransportError) -> None:
    assert proves_unsent(exc, written=False)


@pytest.mark.parametrize("method", sorted(UNSAFE_METHODS))
@pytest.mark.parametrize("failures", range(1, ATTEMPTS + 2))
def test_a_write_that_may_have_been_sent_is_never_retried_when_it_failed_or_got_a_5xx(
    method: str, failures: int
) -> None:
    assert not retries_failure(unsent=False, safe=safe(method), failures=failures, attempts=ATTEMPTS)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "GET", "HEAD"])
def test_any_request_that_never_left_is_retried_while_attempts_remain(method: str) -> None:
    assert retries_failure(unsent=True, safe=safe(method), failures=1, attempts=ATTEMPTS)
    assert retries_failure(unsent=True, safe=safe(method), failures=ATTEMPTS - 1, attempts=ATTEMPTS)
    assert not retries_failure(unsent=True, safe=safe(method), failures=ATTEMPTS, attempts=ATTEMPTS)


@pytest.mark.parametrize(
    ("failures", "expected"), [(1, True), (ATTEMPTS - 1, True), (ATTEMPTS, False), (ATTEMPTS + 1, False)]
)
def test_a_read_that_may_have_been_processed_is_retried_while_attempts_remain(failures: int, expected: bool) -> None:
    assert retries_failure(unsent=False, safe=safe("GET"), failures=failures, attempts=ATTEMPTS) is expected


def test_a_single_attempt_is_never_retried() -> None:
    assert not retries_failure(unsent=True, safe=True, failures=1, attempts=1)


@pytest.mark.parametrize(
    ("exc", "unsent", "expected"),
    [
        (httpx2.WriteError("broken pipe"), True, True),  # only the trace knows: say so to the caller
        (httpx2.RemoteProtocolError("closed"), True, True),
        (httpx2.ReadTimeout("read timeout"), False, False),  # may have been processed: kept as it is
        (httpx2.ConnectError("refused"), True, False),  # already a connect failure
        (RequestNotSent("stale"), True, False),
    ],
    ids=["write-error-unwritten", "closed-unwritten", "read-timeout-written", "connect-error", "already-not-sent"],
)
def test_a_failure_known_unsent_only_from_the_trace_is_reported_as_not_sent(
    exc: httpx2.TransportError, unsent: bool, expected: bool
) -> None:
    assert reports_not_sent(exc, unsent) is expected


@pytest.mark.parametrize(
    ("code", "wait_s", "expected"),
    [
        ("RATE_LIMIT_EXCEEDED", None, True),
        ("RATE_LIMIT_EXCEEDED", 5.0, True),
        ("TOO_MANY_REQUESTS", None, True),
        (None, 5.0, True),  # no code, but says when to come back
        (None, 0.0, True),
        (None, None, False),  # no code and no time: retrying blindly could burn a quota
        ("QUOTA_EXCEEDED", 5.0, False),  # a spent word quota: waiting seconds cannot help
        ("QUOTA_EXCEEDED", None, False),
    ],
)
def test_only_a_rate_limit_429_is_waited_out_never_a_spent_quota(
    code: str | None, wait_s: float | None, expected: bool
) -> None:
    assert is_rate_limit(code, wait_s) is expected


@pytest.mark.parametrize(
    ("wait_s", "throttles", "expected"),
    [
        (7.0, 1, 7.0),  # the upstream's word
        (7.0, 5, 7.0),
        (None, 1, 0.5),  # full jitter on a 1 s base: half of [0, 1]
        (None, 3, 2.0),  # half of [0, 4]
        (0.0, 1, 0.5),  # "come back now" still backs off a little: no spinning on a zero Retry-After
    ],
)
def test_a_rate_limit_holds_the_queue_for_the_upstreams_wait_else_a_jittered_backoff(
    wait_s: float | None, throttles: int, expected: float
) -> None:
    assert throttle_s(wait_s, throttles, rand=lambda: 0.5) == pytest.approx(expected)


@pytest.mark.parametrize(("throttles", "expected"), [(1, True), (MAX_THROTTLES - 1, True), (MAX_THROTTLES, False)])
def test_a_rate_limited_request_is_sent_again_up_to_the_throttle_bound(throttles: int, expected: bool) -> None:
    assert retries_throttle(throttles) is expected
