"""HTTP facts both the scheduler and the API clients read: methods, unsent failures, size caps, error bodies.

It imports nothing of this server above it, so the scheduler can use it without knowing the API clients.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2

# Methods that create data or spend words: a failure after sending may have been processed.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Failures that prove the request never left: the only ones after which a write may be sent again.
UNSENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)  # RequestNotSent is a ConnectError


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
    """Upstream words made safe to quote: control and format characters gone, whitespace folded, capped."""
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
    """Seconds to wait: `Retry-After` (seconds or an HTTP date), else the body's "Try again in N seconds".

    A negative, unreadable or absurdly long value counts as absent; a date in the past means now.
    """
    header = response.headers.get("retry-after", "").strip()
    wait: float | None = None
    if header:
        try:
            wait = float(header)
        except ValueError:
            try:
                wait = max(0.0, parsedate_to_datetime(header).timestamp() - now)
            except (TypeError, ValueError):
                wait = None
    if wait is None:
        _, message = error_body(response)
        match = _TRY_AGAIN.search(message)
        wait = float(match.group(1)) if match else None
    if wait is None or not 0 <= wait <= MAX_RETRY_AFTER_S:
        return None
    return wait
