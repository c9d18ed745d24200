"""Reading upstream answers: request ids, error bodies in both documented forms, transport failures."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn, TypeVar

import httpx2
from pydantic import BaseModel, ValidationError

from server.errors import UpstreamUnavailable

ModelT = TypeVar("ModelT", bound=BaseModel)

# Methods that create data or spend words: a failure after sending may have been processed.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Failures that prove the request never left: the only ones after which a write may be sent again.
UNSENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


def request_id(response: httpx2.Response) -> str | None:
    return response.headers.get("x-request-id")


def error_body(response: httpx2.Response) -> tuple[str | None, str]:
    """(code, message) from `{"error": "…", "code": "…"}` or `{"error": {"code", "message"}}`."""
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
        fields = [f"{e.get('field')}: {e.get('message')}" for e in body["errors"] if isinstance(e, dict)]
        error = "; ".join(fields) or error
    message = error if isinstance(error, str) and error else f"HTTP {response.status_code}"
    return (code if isinstance(code, str) else None), message


def parse(model: type[ModelT], response: httpx2.Response, *, what: str) -> ModelT:
    """Validate a 2xx body against its wire model; anything else is a malformed answer."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError:
        raise UpstreamUnavailable(
            f"{what} sent an answer this server cannot read.",
            request_id=request_id(response),
            status=response.status_code,
            maybe_processed=response.request.method in UNSAFE_METHODS,
        ) from None


async def send(
    http: httpx2.AsyncClient,
    method: str,
    path: str,
    *,
    service: str,
    raise_for: Callable[[httpx2.Response], NoReturn],
    **options: Any,
) -> httpx2.Response:
    """One request: a failure to get an answer, or an error answer, becomes the error tree's."""
    try:
        response = await http.request(method, path, **options)
    except httpx2.TransportError as exc:
        raise transport_failure(exc, service=service, method=method) from None
    if not response.is_success:
        raise_for(response)
    return response


def transport_failure(exc: httpx2.TransportError, *, service: str, method: str) -> UpstreamUnavailable:
    """A request that got no whole answer. Only a refused connection proves nothing was processed."""
    unsent = isinstance(exc, UNSENT)
    if isinstance(exc, ResponseTooLarge):
        kind = f"was answered with more than {MAX_RESPONSE_BYTES // 2**20} MiB, which this server refuses"
    elif isinstance(exc, httpx2.TimeoutException):
        kind = "timed out"
    else:
        kind = f"failed ({type(exc).__name__})"
    return UpstreamUnavailable(
        f"The request to {service} {kind}.", maybe_processed=method in UNSAFE_METHODS and not unsent
    )


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


class ResponseTooLarge(httpx2.ReadError):
    """An upstream answer grew past the size this server accepts."""


MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class CappedStream(httpx2.AsyncByteStream):
    """A response body that fails with `ResponseTooLarge` past `limit` bytes, instead of filling memory."""

    def __init__(self, inner: httpx2.AsyncByteStream, limit: int = MAX_RESPONSE_BYTES) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ResponseTooLarge(f"the answer exceeded {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
