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

import httpx2

from server.backoff import full_jitter
from server.clock import Clock
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
from server.scheduler import budget as budgets
from server.scheduler.gate import Gate

RATE_LIMIT_CODES = frozenset({None, "RATE_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS"})
ERROR_BODY_BYTES = 64 * 1024
MAX_THROTTLES = 10  # the wait budget is the real bound; this one stops a zero Retry-After from spinning


class ScheduledTransport(httpx2.AsyncBaseTransport):
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
        """Send `request` through the gate, retrying only what the table above allows.

        A 429 that is a spent quota (`httpio.spent_quota`) is returned at once, for the client to name.

        Raises:
            RateLimited: the gate cannot let it out within the call's wait budget.
            RequestNotSent: the connection failed before the request was written whole, attempts spent.
            ResponseTooLarge: the answer declares more bytes than this server accepts.
            httpx2.TransportError: no answer, and the failure may not be retried (or attempts are spent).
        """
        budget = budgets.current(self._clock)
        safe = request.method not in UNSAFE_METHODS
        failures = throttles = 0
        while True:
            reservation = await self.gate.acquire(budget)
            trace = SendTrace()
            request.extensions = {**request.extensions, "trace": trace}
            try:
                response = await self._attempt(request, resends=failures + throttles)
            except httpx2.TransportError as exc:
                unsent = isinstance(exc, UNSENT) or not trace.written
                await self.gate.unanswered(reservation, sent=not unsent)
                failures += 1
                if (unsent or safe) and failures < self._attempts:
                    self._observer.retry(self.gate.scope, "transport")
                    await self._back_off(budget, failures)
                    continue
                if unsent and not isinstance(exc, UNSENT):
                    raise RequestNotSent(f"the connection failed before the request was written ({exc})") from exc
                raise
            except BaseException:
                # Cancelled or crashed: never leave it counted as in flight (the settlement is shielded).
                await self.gate.unanswered(reservation, sent=True)
                raise
            if response.status_code == 429:
                try:
                    response = await _buffered(response, request)
                except BaseException:
                    await self.gate.unanswered(reservation, sent=True)
                    raise
                if spent_quota(response, self._clock.now(), self.gate.longest_window_s) is not None:
                    # Its wait is longer than any window (a monthly quota): never waited for, never retried,
                    # and no penalty for the queue: the client above says which quota and when it renews.
                    await self.gate.answered(reservation, response.headers)
                    return response
                code, _ = error_body(response)
                # Retry-After, else the body's "Try again in N seconds", else backoff with full jitter.
                wait = retry_after(response, self._clock.now())
                # A 429 naming no code counts as a rate limit only when it says when to come back.
                if code not in RATE_LIMIT_CODES or (code is None and wait is None):
                    await self.gate.answered(reservation, response.headers)  # a spent quota: retrying cannot help
                    return response
                throttles += 1
                throttled_for = wait or full_jitter(throttles, base_s=1.0)
                await self.gate.answered(reservation, response.headers, throttled_for=throttled_for)
                if throttles < MAX_THROTTLES:
                    self._observer.retry(self.gate.scope, "rate_limited")
                    continue  # provably not processed; the gate holds the whole queue until the retry time
                return response
            await self.gate.answered(reservation, response.headers)
            if _declared_size(response) > MAX_RESPONSE_BYTES:
                await response.aclose()
                raise ResponseTooLarge(f"the answer declares more than {MAX_RESPONSE_BYTES} bytes")
            response.stream = CappedStream(response.stream)  # type: ignore[arg-type]
            if response.status_code >= 500 and safe:
                failures += 1
                if failures < self._attempts:
                    self._observer.retry(self.gate.scope, "server_error")
                    await response.aclose()
                    await self._back_off(budget, failures)
                    continue
            return response

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

    async def _back_off(self, budget: budgets.Budget, attempt: int) -> None:
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
