"""The neuroflash API client: workspaces, quotas, models and streamed chat completions."""

from __future__ import annotations

import functools
from typing import Any, NoReturn, TypeVar

import anyio
import httpx2
from pydantic import BaseModel, TypeAdapter, ValidationError

from server.clock import Clock, SystemClock
from server.errors import IncompleteStream, RouteMissing, UpstreamError, UpstreamUnavailable
from server.neuroflash import refusals, sse
from server.neuroflash.refusals import SERVICE
from server.neuroflash.routes import MODELS_PATH, RouteBook, RouteFinder, no_voice_route, routing_page
from server.neuroflash.wire import (
    BrandVoice,
    ChatRequest,
    ChatResult,
    Model,
    Quota,
    Twin,
    TwinGroup,
    TwinGroupAnswer,
    Workspace,
)
from server.responses import request_id, send, transport_failure
from server.segments import BRAND_VOICE_ID, TWIN_GROUP, WORKSPACE_ID
from server.upstream.ladder import error_for

TWINS = "/api/digital-twin-service/v1"

ItemT = TypeVar("ItemT", bound=BaseModel)


class _NotFoundAnswer(Exception):
    """A 404 still to be judged: a missing route (the gateway's) or a missing workspace or model (the service's)."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__("404")
        self.response = response


class _NoRoute(Exception):
    """The path answered a 404 that names nothing it missed: nothing was processed, and most likely no such route
    (a gateway's 404); confirmed only when no other path answers either."""

    def __init__(self, response: httpx2.Response, *, confirmed: bool) -> None:
        super().__init__("404")
        self.response = response
        self.confirmed = confirmed  # by a probe the route refuses before generating, answered 404 too


class NeuroflashClient:
    """Typed methods over one shared, authenticated `httpx2.AsyncClient` whose base URL is the API's.

    A generation ends when no text came for `idle_s` (comments and keep-alives do not count) or after
    `max_s` in all, whatever the upstream keeps sending.

    The chat path is `chat_path` when one is pinned (NEUROFLASH_CHAT_PATH); otherwise the one `routes`
    remembers, else the reference page's, and on a gateway 404 the other one, once (a missing route
    processed nothing, so no words can be spent twice).
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        clock: Clock | None = None,
        *,
        idle_s: float = 60.0,
        max_s: float = 600.0,
        routes: RouteBook | None = None,
        chat_path: str | None = None,
    ) -> None:
        self._http = http
        self._clock: Clock = clock or SystemClock()
        self._idle_s, self._max_s = idle_s, max_s
        self.routes = routes or RouteBook(self._clock)
        self._finder = RouteFinder(http, self.routes, chat_path)

    async def workspaces(self) -> list[Workspace]:
        """The account's workspaces, from any of the list envelopes the pages allow.

        Raises:
            CredentialsRejected: the token was refused, even a fresh one.
            UpstreamUnavailable: 5xx, timeout, or an answer that holds no readable list.
            UpstreamError: any other refusal (its subclass says which, by status).
        """
        response = await self._send("GET", "/api/workspace-service/v1/workspaces")
        return _items(Workspace, response, "workspaces")

    async def quotas(self, workspace_id: str) -> list[Quota]:
        """The workspace's quotas, read afresh.

        Raises:
            NotFound: neuroflash does not know the workspace.
            UpstreamUnavailable: 5xx, timeout, or an unreadable answer.
            UpstreamError: any other refusal (its subclass says which, by status).
        """
        path = f"/api/usage-service/v1/workspaces/{WORKSPACE_ID.check(workspace_id)}/quotas"
        response = await self._send("GET", path, params={"page": 0, "size": 50}, workspace_id=workspace_id)
        return _items(Quota, response, "quotas")

    async def models(self, workspace_id: str) -> list[Model]:
        """The model list of the workspace; whether its route exists is remembered for every process.

        Raises:
            RouteMissing: the API has no model-list route (a gateway 404); `generate` does not need it.
            NotFound: the route exists and neuroflash does not know the workspace.
            UpstreamUnavailable: 5xx, timeout, or an unreadable answer (transient: nothing is remembered).
            UpstreamError: any other refusal (its subclass says which, by status).
        """
        try:
            response = await self._send("GET", MODELS_PATH, workspace_id=workspace_id, header=True, judge_404=True)
        except RouteMissing:
            await self.routes.models_seen(missing=True)
            raise
        await self.routes.models_seen(missing=False)
        return _items(Model, response, "models")

    async def brand_voices(self, workspace_id: str) -> list[BrandVoice]:
        """The workspace's brand voices (HAL's `_embedded`, `data` or a bare array).

        Raises:
            UpstreamError: neuroflash refused or failed the listing (its subclass says which, by status).
        """
        path = f"/api/brand-voice-service/v1/workspaces/{WORKSPACE_ID.check(workspace_id)}/brand-voices"
        response = await self._send("GET", path, workspace_id=workspace_id)
        return _items(BrandVoice, response, "brandVoices")

    async def voice_prompt(self, workspace_id: str, voice_id: str) -> str:
        """A brand voice rendered as a system prompt, from the route this API has.

        The brand-voice pages give `…/brand-voices/{id}/ds-prompt`, a newer page `…/brand-voice-summaries`:
        the remembered one is tried first, else ds-prompt; a gateway 404 (no such route, nothing processed)
        tries the other once, as the chat path does. What answers is remembered for every process.

        Raises:
            NotFound: neuroflash does not know the voice in this workspace.
            RouteMissing: neither route exists at this API URL.
            UpstreamError: any other refusal or failure (its subclass says which, by status).
        """  # noqa: DOC501 - `raise no_voice_route(…)` raises the RouteMissing named here
        ws, voice = WORKSPACE_ID.check(workspace_id), BRAND_VOICE_ID.check(voice_id)
        paths = {
            "ds-prompt": (f"/api/brand-voice-service/v1/workspaces/{ws}/brand-voices/{voice}/ds-prompt", {}),
            "summaries": (f"/api/v1/workspaces/{ws}/brand-voice-summaries", {"brandVoiceId": voice_id}),
        }
        known, order = await self._finder.voice_order()
        tried: list[str] = []
        for kind in order:
            path, body = paths[kind]
            tried.append(path)
            try:
                response = await self._send("POST", path, workspace_id=workspace_id, judge_404=True, json=body)
            except RouteMissing:
                await self.routes.voice_missing(kind)
                continue
            if kind != known:
                await self.routes.voice_answered(kind)
            return _voice_text(response)
        raise no_voice_route(tried)

    async def twin_groups(self) -> list[TwinGroup]:
        """The static groups of digital twins, with their keys.

        Raises:
            UpstreamError: neuroflash refused or failed the listing.
        """
        return _items(TwinGroup, await self._send("GET", f"{TWINS}/static-groups"), "staticGroups")

    async def group_twins(self, workspace_id: str, group: str) -> list[Twin]:
        """The twins of one static group.

        Raises:
            NotFound: no such group (or workspace).
            UpstreamError: any other refusal or failure.
        """
        path = f"{TWINS}/workspaces/{WORKSPACE_ID.check(workspace_id)}/static-groups/{TWIN_GROUP.check(group)}/twins"
        return _items(Twin, await self._send("GET", path, workspace_id=workspace_id), "twins")

    async def ask_twins(self, workspace_id: str, body: dict[str, Any]) -> TwinGroupAnswer:
        """A group chat with up to 20 twins; sent once, never repeated (treated as spending).

        Raises:
            UpstreamUnavailable: no answer, or one that cannot be read; `maybe_processed` when it may have run.
            UpstreamError: neuroflash refused it (its subclass says which, by status).
        """
        path = f"{TWINS}/workspaces/{WORKSPACE_ID.check(workspace_id)}/twin-group-chat-completions"
        response = await self._send("POST", path, workspace_id=workspace_id, json=body)
        try:
            return TwinGroupAnswer.model_validate_json(response.content)
        except ValidationError:
            raise UpstreamUnavailable(
                "neuroflash sent a twin group chat answer this server cannot read.",
                request_id=request_id(response),
                status=response.status_code,
                maybe_processed=True,
            ) from None

    async def chat(self, workspace_id: str, body: ChatRequest, on_text: sse.TextSink) -> ChatResult:
        """Stream a completion, handing each piece of text to `on_text` as it arrives.

        Tries the remembered chat path (else the reference page's); a gateway 404 there, which processed
        nothing, sends the same request once to the other path. Any other failure is never sent again.

        Raises:
            RouteMissing: no chat path exists at the API URL (or the pinned one does not); nothing was processed.
            NotFound: the route exists and answered 404 for the workspace or what the request named.
            AccessDenied: a 403 with no known reason, naming the workspace.
            ModelNotAvailable: a 403 saying the model is not on the plan.
            FairUseReached: a 403 saying the fair-use limit is reached.
            QuotaExhausted: a 429 saying the quota is spent.
            RateLimited: any other 429 (rate limit or quota: the service looks the quota up to say which).
            UpstreamRejected: 400, 422 or another 4xx: the request as sent was refused.
            CredentialsRejected: 401 even with a fresh token.
            UpstreamUnavailable: 5xx, timeout or a broken answer; `maybe_processed` when words may be spent.
            IncompleteStream: the stream ended before it said it had finished; words may be spent.
            UpstreamStreamError: an error event in the stream; the text so far and the upstream's words go with it.
        """
        tried: list[str] = []
        unconfirmed: list[tuple[str, httpx2.Response]] = []
        candidates = await self._finder.chat_candidates()
        known = await self._finder.known_chat_path()
        for path in candidates:
            tried.append(path)
            try:
                result = await self._chat_at(path, workspace_id, body, on_text, learn=path != known)
            except _NoRoute as answer:
                # The gateway's page processed nothing: the other path is asked at once, so a missing route costs
                # one request, not the 404 and a probe of the same path. A path that answers is remembered in place
                # of this one; only when none does is each page confirmed (a service may use the same page).
                if answer.confirmed:
                    await self._finder.chat_missing(path)
                else:
                    unconfirmed.append((path, answer.response))
                continue
            return result
        for path, response in unconfirmed:
            if not await self._finder.is_missing_route(path, "POST", response):
                raise self._refused(response, workspace_id)
            await self._finder.chat_missing(path)
        raise self._finder.no_chat_route(tried)

    async def find_chat_path(self) -> tuple[str | None, list[str]]:
        """The chat path that exists, found without generating (see `RouteFinder.find_chat_path`).

        Raises:
            UpstreamError: a probe got no answer, or the token was refused (its subclass says which).
        """
        return await self._finder.find_chat_path()

    async def _chat_at(
        self, path: str, workspace_id: str, body: ChatRequest, on_text: sse.TextSink, *, learn: bool
    ) -> ChatResult:
        request = self._http.build_request(
            "POST",
            path,
            json=body.model_dump(exclude_none=True),
            headers={"x-workspace-id": WORKSPACE_ID.check(workspace_id)},
        )
        watch = sse.StreamWatch(self._clock, self._idle_s, self._max_s)
        # The watch runs on the injected clock at each chunk; this real-time cap also ends a silent stream.
        with anyio.move_on_after(self._max_s) as cap:
            try:
                response = await self._http.send(request, stream=True)
            except httpx2.TransportError as exc:
                raise transport_failure(exc, service=SERVICE, method="POST") from None
            try:
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code == 404:
                        if routing_page(response, path):  # the gateway's page: try the other path at once
                            raise _NoRoute(response, confirmed=False)
                        if await self._finder.is_missing_route(path, "POST", response):
                            raise _NoRoute(response, confirmed=True)
                if learn:
                    await self._finder.chat_answered(path)  # any other answer proves the route exists
                if response.status_code != 200:
                    raise self._refused(response, workspace_id)
                response.stream = sse.WatchedStream(response.stream, watch)  # type: ignore[arg-type]
                return await sse.read_response(response, on_text, watch)
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
        judge_404: bool = False,
        json: Any = None,
    ) -> httpx2.Response:
        """One request; with `judge_404`, a 404 is told apart: the gateway's raises RouteMissing.

        Raises:
            RouteMissing: with `judge_404`, the path is not a route of the API (the gateway's 404).
            UpstreamError: any other error answer or failure, by status (see `refusals`).
        """
        headers = {"x-workspace-id": WORKSPACE_ID.check(workspace_id)} if header and workspace_id else None

        def raise_for(response: httpx2.Response) -> NoReturn:
            if judge_404 and response.status_code == 404:
                raise _NotFoundAnswer(response)
            raise self._refused(response, workspace_id)

        try:
            return await send(
                self._http, method, path, service=SERVICE, raise_for=raise_for, params=params, headers=headers,
                json=json,
            )  # fmt: skip
        except _NotFoundAnswer as answer:
            if await self._finder.is_missing_route(path, method, answer.response):
                raise RouteMissing(
                    f"neuroflash has no route {method} {path} at NEUROFLASH_API_URL: the gateway answered 404.",
                    paths=[path],
                    request_id=request_id(answer.response),
                ) from None
            raise self._refused(answer.response, workspace_id) from None

    def _refused(self, response: httpx2.Response, workspace_id: str | None) -> UpstreamError:
        """The error an error answer means, on the one ladder with neuroflash's words (`refusals`)."""
        return error_for(response, refusals.WORDS, now=self._clock.now(), subject=workspace_id)


def _voice_text(response: httpx2.Response) -> str:
    """The prompt of a ds-prompt or summaries answer: `{"text"}` (the summaries page), `{"prompt"}`,
    `{"dsPrompt"}` or `{"data": …}` (assumed: the ds-prompt page shows no answer), a JSON string, or plain text.

    Raises:
        UpstreamUnavailable: the answer holds no prompt text.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and isinstance(body.get("data"), dict | str):
        body = body["data"]
    if isinstance(body, dict):
        body = next((body[k] for k in ("text", "prompt", "dsPrompt", "systemPrompt") if isinstance(body.get(k), str)),
                    None)  # fmt: skip
    if isinstance(body, str) and body.strip():
        return body
    raise UpstreamUnavailable(
        "neuroflash sent a brand-voice prompt this server cannot read.",
        request_id=request_id(response),
        status=response.status_code,
    )


@functools.cache
def _list_adapter(model: type[ItemT]) -> TypeAdapter[list[ItemT]]:
    # Building an adapter compiles a schema: once per model, not once per call (it was a tenth of a call).
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _unwrap(body: Any, what: str) -> Any:
    """The list of an answer: a bare array, the paged `{"data": […]}`, or HAL's `{"_embedded": {"<what>": […]}}`."""
    if isinstance(body, list) or not isinstance(body, dict):
        return body
    if "data" in body:
        return body["data"]
    embedded = body.get("_embedded")
    if isinstance(embedded, dict):
        if what in embedded:
            return embedded[what]
        lists = [v for v in embedded.values() if isinstance(v, list)]
        return lists[0] if len(lists) == 1 else None
    return None


def _items(model: type[ItemT], response: httpx2.Response, what: str) -> list[ItemT]:
    """The list inside any envelope the pages allow (see `_unwrap`).

    Raises:
        UpstreamUnavailable: the answer holds no list of `model`s.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    items = _unwrap(body, what)
    try:
        return _list_adapter(model).validate_python(items)
    except ValidationError:
        raise UpstreamUnavailable(
            f"neuroflash sent a {what} answer this server cannot read.",
            request_id=request_id(response),
            status=response.status_code,
        ) from None
