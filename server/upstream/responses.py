"""Reading upstream answers: request ids, error bodies in both documented forms, transport failures."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import httpx2
from pydantic import BaseModel, ValidationError

from server.errors import UpstreamUnavailable

ModelT = TypeVar("ModelT", bound=BaseModel)

# Methods that create data or spend words: a failure after sending may have been processed.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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


def transport_failure(exc: httpx2.TransportError, *, service: str, method: str) -> UpstreamUnavailable:
    """A request that got no answer. Only a refused connection proves nothing was processed."""
    unsent = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout)
    kind = "timed out" if isinstance(exc, httpx2.TimeoutException) else f"failed ({type(exc).__name__})"
    return UpstreamUnavailable(
        f"The request to {service} {kind}.", maybe_processed=method in UNSAFE_METHODS and not unsent
    )


_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) ?s", re.IGNORECASE)


def retry_after(response: httpx2.Response) -> float | None:
    """Seconds to wait from `Retry-After` (delta seconds), else from a "Try again in N seconds" body."""
    header = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    _, message = error_body(response)
    match = _TRY_AGAIN.search(message)
    return float(match.group(1)) if match else None
