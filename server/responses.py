"""Reading upstream answers: request ids, well-formed bodies, transport failures (error bodies: server.httpio)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import httpx2
from pydantic import BaseModel, ValidationError

from server import context
from server.errors import UpstreamUnavailable
from server.httpio import MAX_RESPONSE_BYTES, UNSAFE_METHODS, UNSENT, ResponseTooLarge

ModelT = TypeVar("ModelT", bound=BaseModel)


def request_id(response: httpx2.Response) -> str | None:
    """The upstream's `x-request-id`; noted for the running call, so a shutdown's cut-off answer can name it."""
    rid = response.headers.get("x-request-id")
    if rid:
        context.note_request_id(rid)
    return rid


def parse(model: type[ModelT], response: httpx2.Response, *, what: str) -> ModelT:
    """Validate a 2xx body against its wire model; anything else is a malformed answer.

    Raises:
        UpstreamUnavailable: the body does not fit the model (`maybe_processed` for a request that changes data).
    """
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
    """One request: a failure to get an answer, or an error answer, becomes the error tree's.

    Raises:
        UpstreamUnavailable: no answer came (connection, timeout, size cap), with `maybe_processed` when sent.
        FlashsnapError: an error answer, as `raise_for` reads it.
    """  # noqa: DOC501 - `raise transport_failure(…)` raises the UpstreamUnavailable named above
    try:
        response = await http.request(method, path, **options)
    except httpx2.TransportError as exc:
        raise transport_failure(exc, service=service, method=method) from None
    if not response.is_success:
        raise_for(response)
    request_id(response)  # noted for the call, should it be cut off later
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
