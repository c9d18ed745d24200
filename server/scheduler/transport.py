"""The scheduling transport: every upstream request passes its credential's gate, and retries only what is safe.

Retry rules (a request that may have been processed is never repeated when it spends words
or creates data):

| outcome                                   | GET (reads)              | POST (generate, snapshot) |
|-------------------------------------------|--------------------------|---------------------------|
| 429 rate limit (not a quota)              | wait, retry              | wait, retry               |
| 429 spent quota (a wait beyond any window)| fail at once             | fail at once              |
| connection refused / connect timeout      | back off, retry          | back off, retry           |
| connection failed before the request was  | back off, retry          | back off, retry           |
| written whole (a stale pooled connection) |                          |                           |
| timeout or broken connection after sending| back off, retry          | fail, `maybe_processed`   |
| 5xx                                       | back off, retry          | fail, `maybe_processed`   |

All waits come out of the call's wait budget; a wait that does not fit fails at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx2

from server import context
from server.backoff import full_jitter
from server.clock import Clock
from server.context import Budget
from server.httpio import (
    MAX_RESPONSE_BYTES,
    UNSAFE_METHODS,
    UNSENT,
    CappedStream,
    RequestNotSent,
    ResponseTooLarge,
    SendTrace,
    error_body,
    retry_after,
    spent_quota,
)
from server.observe import tracing
from server.observe.metrics import NO_METRICS, Observer
from server.scheduler.buckets import bucket_of
from server.scheduler.gate import Gate, Reservation

RATE_LIMIT_CODES = frozenset({None, "RATE_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS"})
ERROR_BODY_BYTES = 64 * 1024
MAX_THROTTLES = 10  # the wait budget is the real bound; this one stops a zero Retry-After from spinning


def proves_unsent(exc: httpx2.TransportError, written: bool) -> bool:
    """Whether a transport failure proves the request never left: a connect failure, or not written whole."""
    return isinstance(exc, UNSENT) or not written


def retries_failure(*, unsent: bool, safe: bool, failures: int, attempts: int) -> bool:
    """Whether a failed attempt is sent again: only if it never left or its method only reads, while attempts remain.

    `failures` counts this one; a 5xx answer is a failure that did arrive (`unsent=False`).
    """
    return (unsent or safe) and failures < attempts


def reports_not_sent(exc: httpx2.TransportError, unsent: bool) -> bool:
    """Whether a final failure is reported as `RequestNotSent`: unsent by the trace, though httpx names no connect."""
    return unsent and not isinstance(exc, UNSENT)


def is_rate_limit(code: str | None, wait_s: float | None) -> bool:
    """Whether a 429 is a rate limit (wait, retry) rather than a spent quota, which retrying cannot help.

    A 429 naming no code counts as a rate limit only when it says when to come back (`wait_s`, seconds).
    """
    return code in RATE_LIMIT_CODES and not (code is None and wait_s is None)


def throttle_s(wait_s: float | None, throttles: int, rand: Callable[[], float] = random.random) -> float:  # noqa: S311 - jitter
    """Seconds to hold the queue after rate-limit 429 number `throttles`: the upstream's wait, else jittered backoff."""
    return wait_s or full_jitter(throttles, base_s=1.0, rand=rand)


def retries_throttle(throttles: int) -> bool:
    """Whether a rate-limited request is sent again after `throttles` 429s (the wait budget is the real bound)."""
    return throttles < MAX_THROTTLES


@dataclass
class _Tries:
    """One request's way through the gate: its wait budget, whether its method only reads, and what it met."""

    budget: Budget
    safe: bool
    failures: int = 0  # transport failures and 5xx answers
    throttles: int = 0  # rate-limit 429s

    @property
    def resends(self) -> int:
        return self.failures + self.throttles


class ScheduledTransport(httpx2.AsyncBaseTransport):
    """The httpx transport of one credential: each attempt waits at its `Gate`, and only safe failures are retried.

    Which failures are retried is the table in this module's docstring (`retries_failure`, `is_rate_limit`);
    every wait comes out of the calling tool's wait budget (`server.context`).
    """

    def __init__(
        self, inner: httpx2.AsyncBaseTransport, gate: Gate, clock: Clock, *, attempts: int = 4,
        observer: Observer = NO_METRICS,
    ) -> None:  # fmt: skip
        self._inner = inner
        self.gate = gate
        self._clock = clock
        self._attempts = attempts
        self._observer = observer

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request` through the gate, retrying what the module's table allows, within the call's wait budget.

        A 429 that is a spent quota (`httpio.spent_quota`) is returned at once, for the client to name.

        Raises:
            RateLimited: the gate's queue, a rate-limit wait or a backoff does not fit the call's wait budget.
            RequestNotSent: the last attempt failed before the request was written whole (nothing was processed).
            ResponseTooLarge: the answer declares more than `MAX_RESPONSE_BYTES` bytes.
            httpx2.TransportError: the last attempt failed otherwise; for an unsafe method (POST, ...) after it
                may have been sent, this is the first failure, never retried.
        """
        tries = _Tries(context.wait_budget(self._clock), safe=request.method not in UNSAFE_METHODS)
        while True:
            reservation = await self.gate.acquire(tries.budget, bucket_of(request.method, request.url.path))
            response = await self._send(request, reservation, tries)
            if response is None:
                continue  # failed and backed off: try again
            if response.status_code == 429:
                response = await self._on_too_many(request, reservation, response, tries)
            else:
                response = await self._on_answer(reservation, response, tries)
            if response is not None:
                return response

    async def _send(self, request: httpx2.Request, reservation: Reservation, tries: _Tries) -> httpx2.Response | None:
        """One attempt: its answer, or None when it failed and a retry is due (after backing off).

        Raises:
            RequestNotSent: the last attempt failed before the request was written whole.
            httpx2.TransportError: the last attempt failed otherwise, or a failure that may have been
                processed (an unsafe method), which is never retried.
        """
        trace = SendTrace()
        request.extensions = {**request.extensions, "trace": trace}
        try:
            return await self._attempt(request, resends=tries.resends)
        except httpx2.TransportError as exc:
            unsent = proves_unsent(exc, trace.written)
            await self.gate.unanswered(reservation, sent=not unsent)
            tries.failures += 1
            if retries_failure(unsent=unsent, safe=tries.safe, failures=tries.failures, attempts=self._attempts):
                self._observer.retry(self.gate.scope, "transport")
                await self._back_off(tries.budget, tries.failures)
                return None
            if reports_not_sent(exc, unsent):
                raise RequestNotSent(f"the connection failed before the request was written ({exc})") from exc
            raise
        except BaseException:
            # Cancelled or crashed: never leave it counted as in flight (the settlement is shielded).
            await self.gate.unanswered(reservation, sent=True)
            raise

    async def _on_too_many(
        self, request: httpx2.Request, reservation: Reservation, response: httpx2.Response, tries: _Tries
    ) -> httpx2.Response | None:
        """A 429: the answer to hand up (a spent quota, or too many throttles), or None to retry after the hold."""
        try:
            response = await _buffered(response, request)
        except BaseException:
            await self.gate.unanswered(reservation, sent=True)
            raise
        if spent_quota(response, self._clock.now(), self.gate.longest_window_s) is not None:
            # Its wait is longer than any window (a monthly quota): never waited for, never retried, and no
            # penalty for the queue: the client above says which quota and when it renews.
            await self.gate.answered(reservation, response.headers, status=429)
            return response
        code, _ = error_body(response)
        # Retry-After, else the body's "Try again in N seconds", else backoff with full jitter.
        wait = retry_after(response, self._clock.now())
        if not is_rate_limit(code, wait):
            await self.gate.answered(reservation, response.headers, status=429)  # a spent quota: no retry helps
            return response
        tries.throttles += 1
        held_s = throttle_s(wait, tries.throttles)
        await self.gate.answered(reservation, response.headers, status=429, throttled_for=held_s)
        if retries_throttle(tries.throttles):
            self._observer.retry(self.gate.scope, "rate_limited")
            return None  # provably not processed; the gate holds the whole queue until the retry time
        return response

    async def _on_answer(
        self, reservation: Reservation, response: httpx2.Response, tries: _Tries
    ) -> httpx2.Response | None:
        """Any other answer, size-capped: handed up, or None for a 5xx of a safe method to retry after backing off.

        Raises:
            ResponseTooLarge: the answer declares more than `MAX_RESPONSE_BYTES` bytes.
        """
        await self.gate.answered(reservation, response.headers, status=response.status_code)
        if _declared_size(response) > MAX_RESPONSE_BYTES:
            await response.aclose()
            raise ResponseTooLarge(f"the answer declares more than {MAX_RESPONSE_BYTES} bytes")
        response.stream = CappedStream(response.stream)  # type: ignore[arg-type]
        if response.status_code < 500:
            return response
        tries.failures += 1
        if not retries_failure(unsent=False, safe=tries.safe, failures=tries.failures, attempts=self._attempts):
            return response
        self._observer.retry(self.gate.scope, "server_error")
        await response.aclose()
        await self._back_off(tries.budget, tries.failures)
        return None

    async def _attempt(self, request: httpx2.Request, *, resends: int) -> httpx2.Response:
        """One attempt, observed: a client span (until the answer's head) and the request counter."""
        method, path = request.method, request.url.path
        with tracing.http_span(method, request.url, path) as span:
            if span is not None and resends:
                span.set_attribute("http.request.resend_count", resends)
            try:
                response = await self._inner.handle_async_request(request)
            except Exception as exc:
                self._observer.upstream(self.gate.scope, method, path, "error")
                tracing.failed(span, exc)
                raise
            self._observer.upstream(self.gate.scope, method, path, str(response.status_code))
            tracing.answered(span, response.status_code)
            return response

    async def _back_off(self, budget: Budget, attempt: int) -> None:
        await budget.wait(min(full_jitter(attempt), budget.left()), scope=self.gate.scope, why="retrying")

    async def aclose(self) -> None:
        await self._inner.aclose()


def _declared_size(response: httpx2.Response) -> int:
    try:
        return int(response.headers.get("content-length", "0"))
    except ValueError:
        return 0


async def _buffered(response: httpx2.Response, request: httpx2.Request) -> httpx2.Response:
    """A small error answer read into memory (64 KiB at most), to be inspected here and read again above."""
    body = b""
    try:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > ERROR_BODY_BYTES:
                body = body[:ERROR_BODY_BYTES]
                break
    finally:
        await response.aclose()
    return httpx2.Response(response.status_code, headers=response.headers, content=body, request=request)
