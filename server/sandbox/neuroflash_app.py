"""The emulated neuroflash API and token endpoint, true to docs/upstream-contract.md."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from server.sandbox import catalog
from server.sandbox.common import EmulatedAPI, RequestIdMiddleware, json_body, secrets_equal
from server.sandbox.records import Fault, Quota
from server.sandbox.state import EmulatorState, completion_words
from server.sandbox.variants import ErrorBodies, StreamFraming

REASONING_EFFORTS = {"max", "xhigh", "high", "medium", "low", "minimal", "none"}
CHUNK_WORDS = 3

# The chat-completions route as the reference page (and all its examples) gives it, and as the overview page does.
REFERENCE_CHAT_PATH = "/api/ds-prototypes/chat/completions"
OVERVIEW_CHAT_PATH = "/api/ds-prototypes/content_generation/chat/completions"
CHAT_PATHS = {"reference": (REFERENCE_CHAT_PATH,), "overview": (OVERVIEW_CHAT_PATH,),
              "both": (REFERENCE_CHAT_PATH, OVERVIEW_CHAT_PATH)}  # fmt: skip
MODELS_PATH = "/api/ds-prototypes/model_selection/models"
HEALTH_PATH = "/api/ds-prototypes/health"
VOICES = "/api/brand-voice-service/v1/workspaces/{workspace_id}/brand-voices"
TWINS = "/api/digital-twin-service/v1"
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 422: "Unprocessable Entity",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}  # fmt: skip


def error_response(
    style: ErrorBodies, status: int, message: str, code: str | None, headers: dict[str, str] | None = None
) -> Response:
    """An error answer in the variant's style: the contract's `{"error", "code"}`, `{"error"}` alone, or HTML.

    The errors page documents only statuses; the codes are assumed, so an upstream may leave them
    out, and a proxy in front of it may answer with a page of its own.
    """
    if style == "not_json":
        reason = REASONS.get(status, "Error")
        page_ = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
        return HTMLResponse(page_, status_code=status, headers=headers)
    body: dict[str, Any] = {"error": message}
    if style == "codes" and code is not None:
        body["code"] = code
    return JSONResponse(body, status_code=status, headers=headers)


def gateway_not_found(path: str, request_id: str, now: float) -> JSONResponse:
    """What the gateway answers for a route it does not have: its framework's page, none of the services' codes."""
    body = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(now)), "path": path,
            "status": 404, "error": "Not Found", "requestId": request_id[:8]}  # fmt: skip
    return JSONResponse(body, status_code=404)


def page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": items,
        "page": {"size": len(items), "totalElements": len(items), "totalPages": 1, "currentPage": 0},
    }


class NeuroflashEmulator(EmulatedAPI):
    """neuroflash route handlers; each counts its requests under a route name."""

    def _error(self, status: int, message: str, code: str | None, headers: dict[str, str] | None = None) -> Response:
        return error_response(self.state.variants.error_bodies, status, message, code, headers)

    async def _begin(self, route: str, carried: dict[str, str] | None = None) -> tuple[Response | None, Fault | None]:
        """The shared `_begin`, with an injected status fault answered in this variant's error style.

        A 429 fault that names a `message` is a quota's (no wait given); without one, a rate limit's. A fault that
        `quotes_credential` fills its message with what the request `carried` (its client secret, its token).
        """
        early, fault = await super()._begin(route)
        if early is None or fault is None or fault.status is None or fault.body is not None:
            return early, fault
        status = fault.status
        if status == 429 and fault.message is None:
            wait = fault.retry_after_s or 1
            headers = {"Retry-After": str(wait)} if fault.retry_after_header else None
            return self._error(429, f"Rate limit exceeded. Try again in {wait} seconds.", "RATE_LIMIT_EXCEEDED",
                               headers), fault  # fmt: skip
        code = {403: "FORBIDDEN", 404: "NOT_FOUND", 429: "QUOTA_EXCEEDED"}.get(status) or (
            "BAD_REQUEST" if 400 <= status < 500 else "INTERNAL_ERROR"
        )
        message = fault.message or "Injected upstream failure."
        if fault.quotes_credential:
            for name, value in (carried or {}).items():
                message = message.replace("{" + name + "}", value)
        if fault.quotes_credential and route == "token":  # an identity server's error is OAuth's: words in `error`
            return JSONResponse({"error": message}, status_code=status), fault
        return self._error(status, message, code), fault

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.state.token_valid(token)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        early, _ = await self._begin("token", {"client_secret": secret})
        if early is not None:
            return self._done("token", early)
        if form.get("grant_type") != "client_credentials":
            return self._done("token", JSONResponse({"error": "unsupported_grant_type"}, status_code=400))
        with self.state.lock:
            known = self.state.clients.get(client_id)
        if known is None or not secrets_equal(known, secret):
            refusal = {"error": "invalid_client", "error_description": "Client authentication failed."}
            return self._done("token", JSONResponse(refusal, status_code=401))
        answer = self.state.variants.token_answer
        if answer == "error_in_200":  # some servers put the OAuth error in a 200, whatever the credentials
            refusal = {"error": "invalid_client", "error_description": "Client authentication failed."}
            return self._done("token", JSONResponse(refusal))
        token = self.state.issue_token(client_id)
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.state.token_ttl_s),
        }
        if answer == "no_expires_in":
            del body["expires_in"]
        elif answer == "string_expires_in":
            body["expires_in"] = str(body["expires_in"])
        elif answer == "lowercase_type":
            body["token_type"] = "bearer"
        return self._done("token", JSONResponse(body))

    async def _guard(self, route: str, request: Request) -> tuple[Response | None, Fault | None]:
        """`_begin`, then the bearer check every API route makes."""
        _, _, token = request.headers.get("authorization", "").partition(" ")
        early, fault = await self._begin(route, {"access_token": token})
        if early is None and not self._authorized(request):
            early = self._error(401, "Unauthorized", "UNAUTHORIZED")
        return (None if early is None else self._done(route, early)), fault

    async def workspaces(self, request: Request) -> Response:
        early, _ = await self._guard("workspaces", request)
        if early is not None:
            return early
        with self.state.lock:
            items = [{"id": ws.id, "name": ws.name} for ws in self.state.workspaces.values()]
        return self._done("workspaces", JSONResponse(workspace_list(self.state.variants.workspace_envelope, items)))

    async def health(self, request: Request) -> Response:
        """`GET …/ds-prototypes/health`, as the chat-completions reference page lists it (header x-workspace-id)."""
        early, _ = await self._guard("health", request)
        if early is not None:
            return early
        if "x-workspace-id" not in request.headers:
            return self._done("health", self._error(400, "The x-workspace-id header is required.", "BAD_REQUEST"))
        return self._done("health", JSONResponse({"status": "ok"}))

    async def quotas(self, request: Request) -> Response:
        early, _ = await self._guard("quotas", request)
        if early is not None:
            return early
        workspace_id = request.path_params["workspace_id"]
        if workspace_id not in self.state.workspaces:
            return self._done("quotas", self._error(404, "Workspace not found.", "NOT_FOUND"))
        wanted = request.query_params.get("usageTypeKey") or None
        with self.state.lock:
            usage_types = [u for u in self.state.workspaces[workspace_id].quotas if wanted in (None, u)]
            items = [quota_body(workspace_id, self.state.quota(workspace_id, u)) for u in usage_types]
        return self._done("quotas", JSONResponse(page(items)))

    def _voice(self, workspace_id: str, voice_id: str) -> dict[str, Any] | None:
        if workspace_id not in self.state.workspaces:
            return None
        return next((v for v in catalog.BRAND_VOICES if v["id"] == voice_id), None)

    async def brand_voices(self, request: Request) -> Response:
        early, _ = await self._guard("brand_voices", request)
        if early is not None:
            return early
        workspace_id = request.path_params["workspace_id"]
        if workspace_id not in self.state.workspaces:
            return self._done("brand_voices", self._error(404, "Workspace not found.", "NOT_FOUND"))
        items = [dict(v) for v in catalog.BRAND_VOICES]
        links = {"self": {"href": f"/api/brand-voice-service/v1/workspaces/{workspace_id}/brand-voices"}}
        body = {"_embedded": {"brandVoices": items}, "_links": links, "page": page(items)["page"]}  # HAL
        return self._done("brand_voices", JSONResponse(body))

    async def ds_prompt(self, request: Request) -> Response:
        """`POST …/brand-voices/{id}/ds-prompt` (the brand-voice pages): `{"prompt"}` [assumed: no answer shown]."""
        if self.state.variants.voice_prompt not in ("ds-prompt", "both"):
            return await self.unrouted(request, HTTPException(404))
        early, _ = await self._guard("voice_prompt", request)
        if early is not None:
            return early
        voice = self._voice(request.path_params["workspace_id"], request.path_params["voice_id"])
        self.state.received.append(("voice_prompt", {"path": request.url.path}))
        if voice is None:
            return self._done("voice_prompt", self._error(404, "Brand voice not found.", "brandVoiceNotFound"))
        return self._done("voice_prompt", JSONResponse({"prompt": catalog.voice_prompt(voice)}))

    async def voice_summary(self, request: Request) -> Response:
        """`POST /api/v1/workspaces/{ws}/brand-voice-summaries {"brandVoiceId"}` → `{"text"}` (the newer page)."""
        if self.state.variants.voice_prompt not in ("summaries", "both"):
            return await self.unrouted(request, HTTPException(404))
        early, _ = await self._guard("voice_prompt", request)
        if early is not None:
            return early
        body = await json_body(request)
        voice_id = body.get("brandVoiceId") if isinstance(body, dict) else None
        if not isinstance(voice_id, str):
            return self._done("voice_prompt", self._invalid([("brandVoiceId", "is required")]))
        self.state.received.append(("voice_prompt", {"path": request.url.path, **body}))
        voice = self._voice(request.path_params["workspace_id"], voice_id)
        if voice is None:
            return self._done("voice_prompt", self._error(404, "Brand voice not found.", "brandVoiceNotFound"))
        return self._done("voice_prompt", JSONResponse({"text": catalog.voice_prompt(voice)}))

    async def twin_groups(self, request: Request) -> Response:
        early, _ = await self._guard("twin_groups", request)
        if early is not None:
            return early
        return self._done("twin_groups", JSONResponse([dict(g) for g in catalog.TWIN_GROUPS]))

    async def group_twins(self, request: Request) -> Response:
        early, _ = await self._guard("twins", request)
        if early is not None:
            return early
        twins = catalog.TWINS.get(request.path_params["group"])
        if request.path_params["workspace_id"] not in self.state.workspaces:
            return self._done("twins", self._error(404, "Workspace not found.", "NOT_FOUND"))
        if twins is None:
            return self._done("twins", self._error(404, "Static group not found.", "NOT_FOUND"))
        return self._done("twins", JSONResponse([dict(t) for t in twins]))

    async def twin_group_chat(self, request: Request) -> Response:
        """`{twinIds ≤ 20, messages}` → `{summary, twinResponses: {id: {answer, reason}}}`."""
        early, _ = await self._guard("twin_group_chat", request)
        if early is not None:
            return early
        if request.path_params["workspace_id"] not in self.state.workspaces:
            return self._done("twin_group_chat", self._error(404, "Workspace not found.", "NOT_FOUND"))
        body = await json_body(request)
        ids = body.get("twinIds") if isinstance(body, dict) else None
        messages = body.get("messages") if isinstance(body, dict) else None
        known = {t["id"]: t for twins in catalog.TWINS.values() for t in twins}
        if not isinstance(ids, list) or not 1 <= len(ids) <= 20 or not isinstance(messages, list) or not messages:
            return self._done("twin_group_chat", self._invalid([("twinIds", "1 to 20 ids, and messages")]))
        if unknown := [i for i in ids if i not in known]:
            return self._done("twin_group_chat", self._error(404, f"Twin not found: {unknown[0]}", "NOT_FOUND"))
        assert isinstance(body, dict)
        self.state.received.append(("twin_group_chat", body))
        question = str(messages[-1].get("content", "")) if isinstance(messages[-1], dict) else ""
        replies = {
            i: {"answer": " ".join(completion_words(messages, i, 12)),
                "reason": f"{known[i]['name']}: {known[i]['description']}"}
            for i in ids
        }  # fmt: skip
        summary = f"{len(ids)} twins answered on: {question[:60]}"
        return self._done("twin_group_chat", JSONResponse({"summary": summary, "twinResponses": replies}))

    def _routed(self, request: Request) -> bool:
        """Whether this variant of the API has the route the request came to (chat paths, the model list)."""
        variants = self.state.variants
        path = request.scope["route"].path if "route" in request.scope else request.url.path
        if path == MODELS_PATH:
            return variants.models_route
        return path in CHAT_PATHS[variants.chat_paths]

    async def models(self, request: Request) -> Response:
        if not self._routed(request):
            return await self.unrouted(request, HTTPException(404))
        early, _ = await self._guard("models", request)
        if early is not None:
            return early
        workspace = self.state.workspaces.get(request.headers.get("x-workspace-id", ""))
        if "x-workspace-id" not in request.headers:
            return self._done("models", self._error(400, "The x-workspace-id header is required.", "BAD_REQUEST"))
        if workspace is None:
            return self._done("models", self._error(404, "Workspace not found.", "NOT_FOUND"))
        on_plan = catalog.PLANS[workspace.plan]
        items = [
            {**m, "description": f"{m['name']} by {m['provider']}", "available": m["id"] in on_plan}
            for m in catalog.MODELS
        ]
        return self._done("models", JSONResponse(items))

    async def chat(self, request: Request) -> Response:
        if not self._routed(request):
            return await self.unrouted(request, HTTPException(404))
        early, fault = await self._guard("chat", request)
        if early is not None:
            return early
        cut_after = fault.cut_after_chunks if fault is not None else None
        if "x-workspace-id" not in request.headers:
            return self._done("chat", self._error(400, "The x-workspace-id header is required.", "BAD_REQUEST"))
        workspace_id = request.headers["x-workspace-id"]
        workspace = self.state.workspaces.get(workspace_id)
        if workspace is None:
            return self._done("chat", self._error(404, "Workspace not found.", "NOT_FOUND"))
        body = await json_body(request)
        if not isinstance(body, dict):
            return self._done("chat", self._invalid([("body", "must be a JSON object")]))
        problems, model = validate_chat(body)
        self.state.received.append(("chat", body))
        if problems:
            return self._done("chat", self._invalid(problems))
        assert model is not None
        if model["id"] not in catalog.PLANS[workspace.plan]:
            msg = f"The model {model['id']} is not available on this workspace's plan."
            return self._done("chat", self._error(403, msg, "MODEL_NOT_AVAILABLE"))
        quota = self.state.quota(workspace_id, "tokens")
        if quota.fair_use_reached:
            return self._done("chat", self._error(403, "Fair use limit reached.", "FAIR_USE_LIMIT_REACHED"))
        if quota.remaining_daily <= 0 or quota.available <= 0:
            which = "Daily" if quota.remaining_daily <= 0 else "Monthly"
            return self._done("chat", self._error(429, f"{which} word quota exceeded.", "QUOTA_EXCEEDED"))

        max_words = int(body.get("max_tokens") or 10_000)
        words = completion_words(body["messages"], model["id"], max_words)
        finish = "length" if len(words) >= max_words else "stop"
        model_name = f"{model['provider']}/{model['id']}"
        gen_id = "gen-" + uuid.uuid4().hex[:24]
        client_id = self.state.token_client(request.headers.get("authorization", "").partition(" ")[2])
        if not body.get("stream"):
            self.state.charge(workspace_id, len(words), client_id)
            return self._done("chat", JSONResponse(completion_body(gen_id, model_name, words, finish)))
        self.state.record("chat", 200)
        stream = self._stream(workspace_id, gen_id, model_name, words, finish, cut_after, fault, client_id)
        return StreamingResponse(stream, media_type="text/event-stream")

    def _invalid(self, problems: list[tuple[str, str]]) -> Response:
        """A 422: the contract's `{"errors": […]}` form, or the variant's codeless or HTML one."""
        style = self.state.variants.error_bodies
        if style == "codes":
            return validation_error(problems)
        return self._error(422, "; ".join(f"{f}: {m}" for f, m in problems), None)

    async def unrouted(self, request: Request, exc: Exception) -> Response:
        """The gateway's answer for a path no route serves: a 404 that no service processed."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        self.state.arrived("unrouted")
        with self.state.lock:
            self.state.unrouted[path] += 1
        if status != 404:
            return self._done("unrouted", JSONResponse({"error": REASONS.get(status, "Error")}, status_code=status))
        return self._done("unrouted", gateway_not_found(path, uuid.uuid4().hex, self.state.clock.now()))

    async def _stream(
        self,
        workspace_id: str,
        gen_id: str,
        model: str,
        words: list[str],
        finish: str,
        cut_after: int | None,
        fault: Fault | None = None,
        client_id: str | None = None,
    ) -> AsyncIterator[bytes]:
        state = self.state
        completed = False
        with state.lock:
            state.active_streams += 1
            state.max_concurrent_streams = max(state.max_concurrent_streams, state.active_streams)
        try:
            base = {"id": gen_id, "object": "chat.completion.chunk", "model": model}
            framing = state.variants.stream_framing
            if fault is not None and fault.runaway_chars is not None:
                async for piece in _runaway(base, fault.runaway_chars, framing, error=cut_after is None):
                    yield piece
                return
            if framing != "bom":  # "bom": the mark comes right before the first text, with no empty chunk ahead
                role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                yield frame({**base, "choices": [role]}, framing)
            for n, start in enumerate(range(0, len(words), CHUNK_WORDS)):
                if cut_after is not None and n >= cut_after:
                    return  # the connection closes without [DONE], as upstream ones have been seen to
                if fault is not None and fault.stall_after_chunks is not None and n >= fault.stall_after_chunks:
                    while True:  # a stuck generation behind a proxy that keeps the connection alive
                        yield b": ping\n\n"
                        with state.lock:
                            state.pings_sent += 1
                        state.changed()
                        await anyio.sleep(fault.ping_every_s)
                if n == 1 and framing in STREAM_FAILURES:
                    yield STREAM_FAILURES[framing]
                    return
                with state.lock:
                    delay = state.latency_s.get("chat_chunk", 0.0)
                if delay:
                    await anyio.sleep(delay)
                with state.lock:
                    state.chunk_times.append(time.time())
                text = " ".join(words[start : start + CHUNK_WORDS])
                content = text if start == 0 else " " + text
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
                if n == 1 and framing == "cut_unterminated":
                    yield frame(chunk, framing)[:-1]  # its blank line never comes
                    return
                yield (BOM if framing == "bom" and n == 0 else b"") + frame(chunk, framing)
            state.charge(workspace_id, len(words), client_id)
            usage = usage_body(words)
            last = frame(
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}, framing
            )
            if framing == "final_chunk_unterminated":
                yield last[:-1]
            elif framing == "no_done":
                yield last
            elif framing == "done_unterminated":
                yield last + b"data: [DONE]"
            else:
                yield last + frame(None, framing)
            completed = True
        finally:
            with state.lock:
                state.active_streams -= 1
                if completed:
                    state.streams_completed += 1
                elif cut_after is None:
                    state.streams_closed_early += 1
            state.changed()


BOM = "\ufeff".encode()
# What a stream that fails after its first text sends: an `error` event, or an error body as plain data.
STREAM_FAILURES: dict[str, bytes] = {
    "error_event": b'event: error\ndata: {"error": {"message": "The model provider failed mid-generation.", '
    b'"code": "PROVIDER_ERROR"}}\n\n',
    "error_data": b'data: {"error": {"message": "Upstream model overloaded.", "type": "server_error"}}\n\n',
}
_LINE_ENDS = {"crlf": "\r\n", "cr": "\r"}


def frame(payload: dict[str, Any] | None, framing: StreamFraming = "lf") -> bytes:
    """One event in the variant's framing; `None` is the closing `[DONE]`."""
    end = _LINE_ENDS.get(framing, "\n")
    prefix = "data:" if framing == "bare_data" else "data: "
    if payload is None:
        lines = ["[DONE]"]
    elif framing == "multiline_data":
        lines = json.dumps(payload, indent=1).split("\n")  # newlines only between tokens: one JSON text again
    else:
        lines = [json.dumps(payload, separators=(",", ":"))]
    text = "".join(prefix + line + end for line in lines)
    if framing == "extra_fields":
        text = f": a comment{end}event: message{end}id: 7{end}retry: 3000{end}x-vendor: 1{end}" + text
    return (text + end).encode()


async def _runaway(base: dict[str, Any], chars: int, framing: StreamFraming, *, error: bool) -> AsyncIterator[bytes]:
    """A generation that ignores its bound: `chars` characters of text in 16 KiB chunks, then an error event
    (`error`) or the connection's end (a fault that also cuts)."""
    left = chars
    while left > 0:
        text = ("runaway " * 2048)[: min(left, 16_384)]
        left -= len(text)
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        yield frame({**base, "choices": [choice]}, framing)
    if error:
        yield STREAM_FAILURES["error_event"]


def usage_body(words: list[str]) -> dict[str, int]:
    completion_tokens = round(len(words) * 1.3)
    return {
        "prompt_tokens": 12,
        "completion_tokens": completion_tokens,
        "total_tokens": 12 + completion_tokens,
        "words_used": len(words),
    }


def completion_body(gen_id: str, model: str, words: list[str], finish: str) -> dict[str, Any]:
    return {
        "id": gen_id,
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": finish,
            }
        ],
        "usage": usage_body(words),
    }


def validation_error(problems: list[tuple[str, str]]) -> JSONResponse:
    errors = [{"field": f, "message": m, "type": "validation"} for f, m in problems]
    return JSONResponse({"errors": errors}, status_code=422)


def validate_chat(body: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    """The upstream's 422 rules; returns the problems and the model entry when it is known."""
    problems: list[tuple[str, str]] = []
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append(("messages", "must be a non-empty list"))
    elif not all(
        isinstance(m, dict) and m.get("role") in {"system", "user", "assistant"} and isinstance(m.get("content"), str)
        for m in messages
    ):
        problems.append(("messages", "each message needs a role (system, user, assistant) and a string content"))
    model = None
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        problems.append(("model", "is required"))
    else:
        provider, _, bare = model_id.rpartition("/")
        model = next((m for m in catalog.MODELS if m["id"] == bare and provider in ("", m["provider"])), None)
        if model is None:
            problems.append(("model", f"unknown model {model_id!r}"))
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 2):
        problems.append(("temperature", "must be a number from 0 to 2"))
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens >= 1):
        problems.append(("max_tokens", "must be a positive integer"))
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        problems.append(("reasoning_effort", f"must be one of {sorted(REASONING_EFFORTS)}"))
    return problems, model


def workspace_list(envelope: str, items: list[dict[str, Any]]) -> Any:
    """The workspace list in the variant's envelope: paged `data`, a bare array, or HAL's `_embedded`."""
    if envelope == "bare":
        return items
    if envelope == "hal":
        links = {"self": {"href": "/api/workspace-service/v1/workspaces"}}
        return {"_embedded": {"workspaces": items}, "_links": links, "page": page(items)["page"]}
    return page(items)


def quota_body(workspace_id: str, quota: Quota) -> dict[str, Any]:
    return {
        "id": f"{workspace_id}:{quota.usage_type}",
        "workspaceId": workspace_id,
        "usageTypeKey": quota.usage_type,
        "bonusAmount": quota.bonus,
        "spilloverAmount": quota.spillover,
        "usedAmount": quota.used,
        "usedAmountDaily": quota.used_daily,
        "dailyRefreshed": quota.daily_refreshed.isoformat() if quota.daily_refreshed else None,
        "availableAmount": quota.available,
        "limitAmount": quota.limit,
        "limitAmountDaily": quota.limit_daily,
        "fairUseLimitReached": quota.fair_use_reached,
    }


def build_token_app(state: EmulatorState) -> Starlette:
    emulator = NeuroflashEmulator(state)
    app = Starlette(routes=[Route("/oauth/v2/token", emulator.token, methods=["POST"])])
    app.add_middleware(RequestIdMiddleware)
    return app


def build_api_app(state: EmulatorState) -> Starlette:
    """The API of the variant `state.variants` names: which chat routes exist, whether the model list does.

    A path no route serves answers the gateway's own 404 (counted as "unrouted", per path in `state.unrouted`).
    """
    emulator = NeuroflashEmulator(state)
    routes = [
        Route("/api/workspace-service/v1/workspaces", emulator.workspaces, methods=["GET"]),
        Route("/api/usage-service/v1/workspaces/{workspace_id}/quotas", emulator.quotas, methods=["GET"]),
        Route(HEALTH_PATH, emulator.health, methods=["GET"]),
        # Every chat path and the model list are routed; each handler first asks the variants (a test may change
        # them while the emulator serves) and answers the gateway's 404 when this reading has no such route.
        *[Route(path, emulator.chat, methods=["POST"]) for path in CHAT_PATHS["both"]],
        Route(MODELS_PATH, emulator.models, methods=["GET"]),
        Route(f"{VOICES}", emulator.brand_voices, methods=["GET"]),
        Route(f"{VOICES}/{{voice_id}}/ds-prompt", emulator.ds_prompt, methods=["POST"]),
        Route("/api/v1/workspaces/{workspace_id}/brand-voice-summaries", emulator.voice_summary, methods=["POST"]),
        Route(f"{TWINS}/static-groups", emulator.twin_groups, methods=["GET"]),
        Route(f"{TWINS}/workspaces/{{workspace_id}}/static-groups/{{group}}/twins", emulator.group_twins,
              methods=["GET"]),
        Route(f"{TWINS}/workspaces/{{workspace_id}}/twin-group-chat-completions", emulator.twin_group_chat,
              methods=["POST"]),
    ]  # fmt: skip
    app = Starlette(routes=routes, exception_handlers={404: emulator.unrouted, 405: emulator.unrouted})
    app.add_middleware(RequestIdMiddleware)
    return app
