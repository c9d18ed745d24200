"""The neuroflash API client: workspaces, quotas, models and streamed chat completions."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import anyio
import httpx2
from pydantic import BaseModel, TypeAdapter, ValidationError

from server.clock import Clock, SystemClock
from server.errors import (
    CredentialsRejected,
    FairUseReached,
    IncompleteStream,
    ModelNotAvailable,
    NotFound,
    QuotaExhausted,
    RateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from server.httpio import UNSAFE_METHODS, error_body, retry_after
from server.neuroflash.wire import ChatChunk, ChatRequest, ChatResult, Model, Quota, Workspace
from server.responses import request_id, send, transport_failure

SERVICE = "neuroflash"


TextSink = Callable[[str], Awaitable[None]]
ItemT = TypeVar("ItemT", bound=BaseModel)


class GenerationDeadline(httpx2.ReadTimeout):
    """A stream that sent no text for the idle timeout (keep-alive comments do not count), or ran too long."""


class StreamWatch:
    """The two clocks of one generation: time since the last text, and time since the start."""

    def __init__(self, clock: Clock, idle_s: float, max_s: float) -> None:
        self._clock = clock
        self.idle_s, self.max_s = idle_s, max_s
        self.started = self.last_data = clock.now()

    def data(self) -> None:
        self.last_data = self._clock.now()

    def check(self) -> None:
        """Stop a stream that ran past its deadline, or went quiet for too long.

        Raises:
            GenerationDeadline: the whole stream took longer than `max_s`, or no text came for `idle_s`.
        """
        now = self._clock.now()
        if now - self.started > self.max_s:
            raise GenerationDeadline(f"the generation ran longer than {self.max_s:.0f} s")
        if now - self.last_data > self.idle_s:
            raise GenerationDeadline(f"no text arrived for {self.idle_s:.0f} s, only keep-alives")


class _WatchedStream(httpx2.AsyncByteStream):
    """The body of a generation stream, checked against its watch at each chunk, keep-alive comments included."""

    def __init__(self, inner: httpx2.AsyncByteStream, watch: StreamWatch) -> None:
        self._inner, self._watch = inner, watch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._watch.check()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class NeuroflashClient:
    """Typed methods over one shared, authenticated `httpx2.AsyncClient` whose base URL is the API's.

    A generation ends when no text came for `idle_s` (comments and keep-alives do not count) or after
    `max_s` in all, whatever the upstream keeps sending.
    """

    def __init__(
        self, http: httpx2.AsyncClient, clock: Clock | None = None, *, idle_s: float = 60.0, max_s: float = 600.0
    ) -> None:
        self._http = http
        self._clock: Clock = clock or SystemClock()
        self._idle_s, self._max_s = idle_s, max_s

    async def workspaces(self) -> list[Workspace]:
        response = await self._send("GET", "/api/workspace-service/v1/workspaces")
        return _items(Workspace, response, "workspaces")

    async def quotas(self, workspace_id: str) -> list[Quota]:
        path = f"/api/usage-service/v1/workspaces/{quote(workspace_id, safe='')}/quotas"
        response = await self._send("GET", path, params={"page": 0, "size": 50}, workspace_id=workspace_id)
        return _items(Quota, response, "quotas")

    async def models(self, workspace_id: str) -> list[Model]:
        response = await self._send(
            "GET", "/api/ds-prototypes/model_selection/models", workspace_id=workspace_id, header=True
        )
        return _items(Model, response, "models")

    async def chat(self, workspace_id: str, body: ChatRequest, on_text: TextSink) -> ChatResult:
        """Stream a completion, handing each piece of text to `on_text` as it arrives.

        Raises:
            IncompleteStream: the stream broke off or ended without finishing (words may be spent).
            UpstreamUnavailable: no answer, a 5xx, or a malformed stream (`maybe_processed` once sent).
            FlashsnapError: an error answer before the stream started (see `_raise_for`).
        """  # noqa: DOC501 - `raise transport_failure(…)` raises the UpstreamUnavailable named here
        request = self._http.build_request(
            "POST",
            "/api/ds-prototypes/content_generation/chat/completions",
            json=body.model_dump(exclude_none=True),
            headers={"x-workspace-id": workspace_id},
        )
        watch = StreamWatch(self._clock, self._idle_s, self._max_s)
        # The watch runs on the injected clock at each chunk; this real-time cap also ends a silent stream.
        with anyio.move_on_after(self._max_s) as cap:
            try:
                response = await self._http.send(request, stream=True)
            except httpx2.TransportError as exc:
                raise transport_failure(exc, service=SERVICE, method="POST") from None
            try:
                if response.status_code != 200:
                    await response.aread()
                    _raise_for(response, workspace_id)
                response.stream = _WatchedStream(response.stream, watch)  # type: ignore[arg-type]
                return await _read_stream(response, on_text, watch)
            finally:
                await response.aclose()
        assert cap.cancelled_caught
        raise IncompleteStream(
            f"The generation ran longer than {self._max_s:.0f} s (FLASHSNAP_MAX_GENERATION_S) and was stopped.",
            maybe_processed=True,
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        header: bool = False,
    ) -> httpx2.Response:
        headers = {"x-workspace-id": workspace_id} if header and workspace_id else None
        return await send(
            self._http,
            method,
            path,
            service=SERVICE,
            raise_for=lambda response: _raise_for(response, workspace_id),
            params=params,
            headers=headers,
        )


@functools.cache
def _list_adapter(model: type[ItemT]) -> TypeAdapter[list[ItemT]]:
    # Building an adapter compiles a schema: once per model, not once per call (it was a tenth of a call).
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _items(model: type[ItemT], response: httpx2.Response, what: str) -> list[ItemT]:
    """The list inside the paged envelope, or a bare array (both are accepted upstream).

    Raises:
        UpstreamUnavailable: the body is neither.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    items = body if isinstance(body, list) else body.get("data") if isinstance(body, dict) else None
    try:
        return _list_adapter(model).validate_python(items)
    except ValidationError:
        raise UpstreamUnavailable(
            f"neuroflash sent a {what} answer this server cannot read.",
            request_id=request_id(response),
            status=response.status_code,
        ) from None


async def _read_stream(response: httpx2.Response, on_text: TextSink, watch: StreamWatch) -> ChatResult:
    rid = request_id(response)
    parts: list[str] = []
    model, finish, words = "", "", 0
    try:
        async for event in httpx2.EventSource(response):
            if event.data.strip() == "[DONE]":
                return ChatResult(
                    text="".join(parts),
                    model=model,
                    finish_reason=finish or "stop",
                    words_used=words,
                    request_id=rid,
                )
            chunk = ChatChunk.model_validate_json(event.data)
            watch.data()
            model = chunk.model or model
            if chunk.usage is not None:
                words = chunk.usage.words_used
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                if choice.delta.content:
                    parts.append(choice.delta.content)
                    await on_text(choice.delta.content)
    except httpx2.SSEError:
        raise UpstreamUnavailable(
            "neuroflash answered the generation with something other than an event stream.",
            request_id=rid,
            maybe_processed=True,
        ) from None
    except ValidationError:
        raise UpstreamUnavailable(
            "neuroflash sent a malformed stream event.", request_id=rid, maybe_processed=True
        ) from None
    except GenerationDeadline as exc:
        raise _cut(
            f"The generation was stopped: {exc} (FLASHSNAP_TIMEOUT_S, FLASHSNAP_MAX_GENERATION_S).", rid, parts
        ) from None
    except httpx2.TransportError as exc:
        raise _cut(f"The generation stream broke ({type(exc).__name__}) before it finished.", rid, parts) from None
    raise _cut("The generation stream ended before [DONE]: the text is incomplete.", rid, parts)


def _cut(message: str, rid: str | None, parts: list[str]) -> IncompleteStream:
    """A stream that ended early: the words may be spent, so it is never repeated; the text so far goes with it."""
    return IncompleteStream(message, request_id=rid, maybe_processed=True, details={"partial_text": "".join(parts)})


def _raise_for(response: httpx2.Response, workspace_id: str | None) -> NoReturn:
    """Map a neuroflash error answer to the error tree.

    Raises:
        CredentialsRejected: 401 after the token was refreshed once.
        FairUseReached: the workspace is blocked for fair use.
        ModelNotAvailable: the model is not on the workspace's plan.
        NotFound: the workspace (or another named thing) does not exist.
        QuotaExhausted: a word quota is spent.
        RateLimited: a rate limit answered 429.
        UpstreamRejected: the request was refused as invalid (400, 422) or not allowed (403).
        UpstreamUnavailable: a 5xx or another status this server cannot act on.
    """
    code, message = error_body(response)
    status, rid = response.status_code, request_id(response)
    if status == 401:
        raise CredentialsRejected(
            "neuroflash refused the service account's access token, even a freshly issued one.",
            request_id=rid,
            status=status,
        )
    if status == 404:
        raise NotFound(
            f"neuroflash does not know the workspace {workspace_id!r}."
            if workspace_id
            else f"neuroflash answered 404, saying: «{message}»",
            hint="Call list_workspaces to see the workspaces this account can use.",
            request_id=rid,
            status=status,
        )
    if status == 403 and code == "MODEL_NOT_AVAILABLE":
        raise ModelNotAvailable(f"neuroflash refused the model, saying: «{message}»", request_id=rid, status=status)
    if status == 403 and code == "FAIR_USE_LIMIT_REACHED":
        raise FairUseReached("The workspace has reached its fair-use limit.", request_id=rid, status=status)
    if status == 429 and code == "QUOTA_EXCEEDED":
        message = f"neuroflash refused the generation for its quota, saying: «{message}»"
        raise QuotaExhausted(message, period=None, resets_at=None, request_id=rid, status=status)
    if status == 429:
        retry = retry_after(response, time.time()) or 1.0
        raise RateLimited("neuroflash is rate limiting requests.", scope=SERVICE, retry_after_s=retry, request_id=rid)
    if 400 <= status < 500:  # refused, so not processed: never "maybe processed", never "retry as is"
        raise UpstreamRejected(f"neuroflash rejected the request, saying: «{message}»", request_id=rid, status=status)
    raise UpstreamUnavailable(
        f"neuroflash answered HTTP {status}, saying: «{message}»",
        request_id=rid,
        status=status,
        maybe_processed=response.request.method in UNSAFE_METHODS,
    )
