"""Streamable HTTP answers every client in a form it takes: JSON, a stream, or JSON when it names neither.

The SDK refuses with 406 a POST whose `Accept` lacks either `application/json` or `text/event-stream`
(the spec lets a server refuse). Real clients send just one, or no `Accept` at all (python-sdk#2349,
typescript-sdk#1952), and RFC 9110 lets a server answer anyway. So, before the SDK reads the request:

- both named (or `*/*`): passed on as it is, a stream or JSON as the SDK decides;
- only a stream (`text/event-stream`, `text/*`): passed on as taking both; a reply the SDK writes as JSON
  (the 2026-07-28 entry does, when nothing came before it) is sent as a one-event stream;
- only JSON, no `Accept`, or only other types: passed on as taking both, and the SDK's stream is read to its
  end here and answered as the one JSON-RPC reply it carries. The notices it carried (progress, change
  notices) are dropped, as a JSON body has no room for them, and so the request is marked
  (`consent.REPLY_IN_JSON`): a question cannot be pushed mid-call to a client that takes only JSON.
  `subscriptions/listen` is a stream by nature: it keeps the client's own `Accept` (the SDK's 406).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.tooling.consent import REPLY_IN_JSON
from server.transports.jsonrpc_guard import replaying

JSON, SSE = "application/json", "text/event-stream"
BOTH = f"{JSON}, {SSE}".encode()
MAX_STREAM_BYTES = 64 * 1024 * 1024  # a reply the SDK streams is held whole here: bounded, like every body
_INTERNAL_ERROR = -32603


def wants(accept: str) -> tuple[bool, bool]:
    """(takes JSON, takes a stream) for an `Accept` value, as the SDK reads it (wildcards, parameters, any case)."""
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    takes_any = "*/*" in types
    return takes_any or bool(types & {JSON, "application/*"}), takes_any or bool(types & {SSE, "text/*"})


class LenientAccept:
    """ASGI middleware for the Streamable HTTP endpoint at `path` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, path: str = "/mcp") -> None:
        self.app = app
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.pop(REPLY_IN_JSON, None)  # only this middleware says so, never whoever built the scope
        if scope["method"] != "POST" or scope["path"].rstrip("/") != self._path:
            await self.app(scope, receive, send)
            return
        # Repeated `Accept` lines are one list (RFC 9110 §5.3): read them together.
        lines = [v for k, v in scope["headers"] if k == b"accept"]
        takes_json, takes_stream = wants(b", ".join(lines).decode("latin-1"))
        if takes_json and takes_stream:
            if len(lines) > 1:  # the SDK reads the first line alone: hand it the list as one
                scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"accept"]}
                scope["headers"].append((b"accept", b", ".join(lines)))
            await self.app(scope, receive, send)
            return
        body, replay = await _read_body(receive)
        message = _parsed(body)
        if not takes_stream and message.get("method") == "subscriptions/listen":
            await self.app(scope, replay, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"accept"] + [(b"accept", BOTH)]
        if takes_stream:
            await self.app({**scope, "headers": headers}, replay, _InStream(send))
            return
        await self.app({**scope, "headers": headers, REPLY_IN_JSON: True}, replay, _InJSON(send, message.get("id")))


class _InJSON:
    """A `send` that passes every answer on, but reads an event stream to its end and sends its reply as JSON."""

    def __init__(self, send: Send, request_id: Any) -> None:
        self._send = send
        self._id = request_id
        self._start: Message | None = None
        self._chunks: list[bytes] = []
        self._size = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if _content_type(message).startswith(SSE):
                self._start = message
                return
        elif message["type"] == "http.response.body" and self._start is not None:
            self._size += len(message.get("body", b""))
            if self._size <= MAX_STREAM_BYTES:
                self._chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._reply()
            return
        await self._send(message)

    async def _reply(self) -> None:
        assert self._start is not None
        reply = _last_reply(b"".join(self._chunks)) if self._size <= MAX_STREAM_BYTES else None
        if reply is None:
            reason = (
                "The reply was larger than this server sends as JSON."
                if self._size > MAX_STREAM_BYTES
                else ("The server ended its reply without an answer.")
            )
            reply = {"jsonrpc": "2.0", "id": self._id, "error": {"code": _INTERNAL_ERROR, "message": reason}}
        body = json.dumps(reply, separators=(",", ":")).encode()
        kept = [(k, v) for k, v in self._start.get("headers", []) if k.lower() not in _STREAM_HEADERS]
        headers = [*kept, (b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
        await self._send({"type": "http.response.start", "status": self._start["status"], "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


class _InStream:
    """A `send` that passes every answer on, but sends a JSON reply (200) as a one-event stream."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] == 200 and _content_type(message).startswith(JSON):
                self._start = message
                return
        elif message["type"] == "http.response.body" and self._start is not None:
            self._chunks.append(message.get("body", b""))  # a JSON reply: already whole and bounded by the SDK
            if not message.get("more_body", False):
                body = b"event: message\ndata: " + b"".join(self._chunks).replace(b"\n", b"") + b"\n\n"
                kept = [(k, v) for k, v in self._start.get("headers", []) if k.lower() not in _STREAM_HEADERS]
                headers = [*kept, (b"content-type", SSE.encode()), (b"cache-control", b"no-cache")]
                await self._send({"type": "http.response.start", "status": 200, "headers": headers})
                await self._send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await self._send(message)


_STREAM_HEADERS = frozenset({b"content-type", b"content-length", b"transfer-encoding", b"cache-control",
                             b"connection", b"x-accel-buffering"})  # fmt: skip


def _content_type(start: Message) -> str:
    for key, value in start.get("headers", []):
        if key.lower() == b"content-type":
            return str(value.decode("latin-1")).lower()
    return ""


def _last_reply(stream: bytes) -> dict[str, Any] | None:
    """The last JSON-RPC reply (a result or an error) among an event stream's events; None when there is none."""
    found = None
    for event in stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        try:
            message = json.loads(data) if data else None
        except ValueError:
            continue
        if isinstance(message, dict) and ("result" in message or "error" in message):
            found = message
    return found


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body (the JSON-RPC guard outside already bounded it), and a `receive` that replays it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replaying(body, receive)


def _parsed(body: bytes) -> dict[str, Any]:
    """The request's JSON-RPC message (the guard outside let only a well-formed one through); {} otherwise."""
    try:
        message = json.loads(body)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}
