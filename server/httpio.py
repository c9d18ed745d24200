"""HTTP facts both the scheduler and the API clients read: methods, unsent failures, size caps, error bodies.

It imports nothing of this server above it, so the scheduler can use it without knowing the API clients.
"""

from __future__ import annotations

import functools
import math
import re
import ssl
import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2

from server import known_secrets

# Methods that create data or spend words: a failure after sending may have been processed.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Failures that prove the request never left: the only ones after which a write may be sent again.
UNSENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)  # RequestNotSent is a ConnectError


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context every upstream client shares: building one reads the system's CA bundle (about 30 ms),
    which each client and transport would otherwise do again at every start."""
    return httpx2.create_ssl_context(trust_env=False)


class RequestNotSent(httpx2.ConnectError):
    """The connection failed before the request was written whole: an upstream acts on whole requests only,
    so nothing can have been processed. A pooled keep-alive connection the upstream closed in the same
    instant fails this way."""


class SendTrace:
    """httpcore's `trace` extension for one attempt: whether the whole request was handed to the connection.

    A write that fails (headers or body) means the request never arrived whole; once the last byte was
    handed over, a failure may come after the upstream read it, so it counts as sent.
    """

    def __init__(self) -> None:
        self.written = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):
            self.written = True


# Idle pooled connections are dropped before common upstream keep-alive limits (5 s and more) close them,
# so a request is never written into a connection the upstream is closing at that moment.
KEEPALIVE_EXPIRY_S = 4.0

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# Upstream text shown to a model or written to a log: enough for a reason, too little for a payload.
UPSTREAM_TEXT_CHARS = 300


class ResponseTooLarge(httpx2.ReadError):
    """An upstream answer grew past the size this server accepts."""


class CappedStream(httpx2.AsyncByteStream):
    """A response body that fails with `ResponseTooLarge` past `limit` bytes, instead of filling memory."""

    def __init__(self, inner: httpx2.AsyncByteStream, limit: int = MAX_RESPONSE_BYTES) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The body's chunks, as they arrive.

        Raises:
            ResponseTooLarge: the body grew past the cap.
        """
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ResponseTooLarge(f"the answer exceeded {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


_CONTROL = re.compile(r"\s+")


def upstream_text(text: str, limit: int = UPSTREAM_TEXT_CHARS) -> str:
    """Upstream words made safe to quote: a secret it quotes back masked (before any cut, so no part of one is
    left), control and format characters gone, whitespace folded, capped."""
    text = known_secrets.mask(text[: limit * 4 + 1024])  # room for a secret that straddles the cut
    kept = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text[: limit * 4])
    folded = _CONTROL.sub(" ", kept).strip()
    return folded if len(folded) <= limit else folded[: limit - 1].rstrip() + "…"


def error_body(response: httpx2.Response) -> tuple[str | None, str]:
    """(code, message) from `{"error": "…", "code": "…"}` or `{"error": {"code", "message"}}`.

    Both are the upstream's words: cleaned and capped by `upstream_text`, never trusted to be short.
    """
    try:
        body: Any = response.json()
    except ValueError:
        return None, f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return None, f"HTTP {response.status_code}"
    error, code = body.get("error"), body.get("code")
    if isinstance(error, dict):
        code, error = error.get("code", code), error.get("message")
    if isinstance(body.get("errors"), list):  # neuroflash's 422 form
        fields = [f"{e.get('field')}: {e.get('message')}" for e in body["errors"][:10] if isinstance(e, dict)]
        error = "; ".join(fields) or error
    message = upstream_text(error) if isinstance(error, str) else ""
    code = upstream_text(code, 64) if isinstance(code, str) else None
    return code or None, message or f"HTTP {response.status_code}"


_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) ?s", re.IGNORECASE)
# A wait longer than a day is not a rate limit but a broken header: it is ignored, not obeyed.
MAX_RETRY_AFTER_S = 86_400.0


def retry_after(response: httpx2.Response, now: float) -> float | None:
    """Seconds to wait: `Retry-After` (seconds or an HTTP date), else the body's `retry_after`, else its
    "Try again in N seconds".

    A negative, unreadable or absurdly long value counts as absent; a date in the past means now.
    """
    said = _said_wait(response, now, with_reset=False)
    if said is None or not 0 <= said[0] <= MAX_RETRY_AFTER_S:
        return None
    return said[0]


# --- rate-limit headers: the upstream's words, bounded by what is plausible -------------------------------

MAX_WINDOW_S = 86_400.0  # a rate-limit window is at most a day: a reset further ahead is a quota's renewal
MAX_RENEWAL_S = 40 * 86_400.0  # a quota renews within a billing cycle: a renewal further ahead is not believed
RESET_MS_FROM = 1e11  # a reset this large is in milliseconds (1e11 s would be the year 5138)
RESET_ABSOLUTE_FROM = 1e9  # a reset below this is seconds from now (1e9 s is September 2001)


@dataclass(frozen=True)
class RateLimitReading:
    """`X-RateLimit-*` as they may be believed; a figure that is not plausible is None."""

    limit: int | None = None  # above 0
    remaining: int | None = None  # 0..limit
    reset_at: float | None = None  # the current window's end, Unix seconds, within the next day
    beyond_window_at: float | None = None  # a reset more than a day ahead: not a window (a quota's renewal)


def plausible_rate_limit(
    limit: float | None, remaining: float | None, reset: float | None, now: float
) -> RateLimitReading:
    """The rate-limit figures an upstream sent, bounded by what is plausible before anything keeps them.

    - a limit of 0 or less says nothing: all three figures are ignored;
    - remaining is clamped to 0..limit;
    - a reset of 1e11 or more is in milliseconds; one below 1e9 is seconds from now;
    - a reset not after `now` ends a window already over: absent;
    - a reset more than a day ahead is no window: `beyond_window_at` (a spent quota's renewal, on a 429).
    """
    figures = [v if v is not None and math.isfinite(v) else None for v in (limit, remaining, reset)]
    limit, remaining, reset = figures
    if limit is not None and limit <= 0:
        return RateLimitReading()
    bound = None if limit is None else int(limit)
    left = None if remaining is None else max(0, int(remaining))
    if left is not None and bound is not None:
        left = min(left, bound)
    reset_at = beyond = None
    if reset is not None:
        if reset >= RESET_MS_FROM:
            reset = reset / 1000.0
        elif reset < RESET_ABSOLUTE_FROM:
            reset = now + reset
        if reset > now + MAX_WINDOW_S:
            beyond = reset
        elif reset > now:
            reset_at = reset
    return RateLimitReading(bound, left, reset_at, beyond)


RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def read_rate_limit(headers: Mapping[str, str], now: float) -> RateLimitReading:
    """`X-RateLimit-Limit`, `-Remaining` and `-Reset` of an answer, bounded (see `plausible_rate_limit`)."""
    limit, remaining, reset = (_number(headers.get(name)) for name in RATE_LIMIT_HEADERS)
    return plausible_rate_limit(limit, remaining, reset, now)


# --- a 429 that is a spent quota, not a rate limit ---------------------------------------------------------

HOUR_S = 3600.0


@dataclass(frozen=True)
class SpentQuota:
    """A 429 whose wait is longer than any rate-limit window: a quota spent until it renews."""

    wait_s: float  # what the upstream said, in seconds from now
    renews_at: float  # Unix seconds
    said_by: str  # which part of the answer said it: a header, the body's retry_after, its message


def quota_threshold(longest_window_s: float | None) -> float:
    """The wait beyond which a 429 is a spent quota: the longest window seen (at least an hour), with a margin.

    The floor of an hour keeps the hourly model's own waits (up to an hour) rate limits even before any
    window has been seen; a monthly quota's wait is days.
    """
    return max(longest_window_s or 0.0, HOUR_S) * 1.25 + 60.0


def spent_quota(response: httpx2.Response, now: float, longest_window_s: float | None = None) -> SpentQuota | None:
    """Whether a 429 is a spent quota: its wait (`Retry-After`, the body's `retry_after` or "Try again in N
    seconds", else a reset) is longer than any rate-limit window. Never to be waited for or retried.

    `longest_window_s`: the longest rate-limit window seen for this credential, if any. A wait beyond a
    billing cycle (`MAX_RENEWAL_S`, e.g. years) is no renewal but a broken figure: not a quota, and
    `retry_after` ignores it too.
    """
    if response.status_code != 429:
        return None
    said = _said_wait(response, now, with_reset=True)
    if said is None or not quota_threshold(longest_window_s) < said[0] <= MAX_RENEWAL_S:
        return None
    wait, said_by = said
    return SpentQuota(wait, now + wait, said_by)


def _said_wait(response: httpx2.Response, now: float, *, with_reset: bool) -> tuple[float, str] | None:
    """The first wait the answer names, in seconds from now, unbounded above; None if it names none."""
    header = response.headers.get("retry-after", "").strip()
    if header:
        seconds = _number(header)
        if seconds is None:
            try:
                seconds = max(0.0, parsedate_to_datetime(header).timestamp() - now)
            except (TypeError, ValueError, OverflowError):
                seconds = None
        if seconds is not None and seconds >= 0:
            return seconds, "Retry-After"
    body = _json(response)
    if isinstance(body, dict):
        error = body.get("error")
        nested: dict[str, Any] = error if isinstance(error, dict) else {}
        for where in (body, body.get("details"), nested, nested.get("details")):
            seconds = _number(where.get("retry_after")) if isinstance(where, dict) else None
            if seconds is not None and seconds >= 0:
                return seconds, "retry_after"
    _, message = error_body(response)
    match = _TRY_AGAIN.search(message)
    if match:
        return float(match.group(1)), "message"
    if with_reset:
        reading = read_rate_limit(response.headers, now)
        reset = reading.reset_at or reading.beyond_window_at
        if reset is not None:
            return reset - now, "X-RateLimit-Reset"
    return None


def _json(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _number(value: object) -> float | None:
    """A finite number from a header or a JSON value; None for anything else (a bool included)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
