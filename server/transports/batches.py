"""JSON-RPC batches: taken where the agreed protocol version requires them, refused where it forbids them.

2025-03-26 says a server MUST accept a batch (an array of requests and notifications, or of responses), and the
SDK's Streamable HTTP assumes that version when a request carries no MCP-Protocol-Version header; 2025-06-18
removed batches, and every later version has none. Earlier versions never sent them: refused too. A batch taken
is split: each message is judged by the guard and served as if it came alone; the answers to its requests come
back together as one array (JSON-RPC 2.0, section 6), its notifications and responses get none, and `initialize`
may not be in one (2025-03-26, lifecycle). Over stdio the version is the one the session agreed; over Streamable
HTTP, the request's header.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.transports.jsonrpc_guard import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    RPC_CALL,
    batch_items,
    call_of,
    error,
    judge_parsed,
    refuse_batch,
    replaying,
)

log = logging.getLogger(__name__)

BATCH_VERSIONS = frozenset({DEFAULT_NEGOTIATED_VERSION})  # 2025-03-26: the one version whose servers MUST take them
MAX_BATCH = 100  # messages in one batch: each may be a tool call running at once with the others


def takes_batches(version: str | None) -> bool:
    """Whether a session of protocol `version` (None: not agreed yet) may send batches."""
    return version in BATCH_VERSIONS


def refusal(items: list[Any], version: str | None) -> list[dict[str, Any]]:
    """The answers to a batch that `version` does not allow: one for each request in it."""
    agreed = f"protocol version {version}" if version else "a session that has not agreed a protocol version yet"
    reason = (
        f"JSON-RPC batches are taken only under protocol version {DEFAULT_NEGOTIATED_VERSION}; this is {agreed}. "
        "Send one message at a time."
    )
    return refuse_batch(items, reason)


@dataclass
class Split:
    """A batch judged: the errors answered at once, the messages to serve, and the ids whose answers it awaits."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    messages: list[JSONRPCMessage] = field(default_factory=list)
    waiting: list[Any] = field(default_factory=list)  # as the SDK correlates them ("7" and 7 are one id)


def split(items: list[Any], text: str) -> Split | list[dict[str, Any]]:
    """Judge each message of a batch; a batch refused whole (empty, or too long) is its answers instead."""
    if not items:
        return [error(None, INVALID_REQUEST, "An empty batch is not a JSON-RPC request.")]
    if len(items) > MAX_BATCH:
        return refuse_batch(items, f"A batch may hold at most {MAX_BATCH} messages; send the rest in another.")
    judged = Split()
    for item in items:
        if isinstance(item, dict) and item.get("method") == "initialize":
            judged.answers.append(error(item.get("id"), INVALID_REQUEST, "initialize may not be part of a batch."))
            continue
        verdict, message, _ = judge_parsed(item, text)
        if verdict is not None:
            judged.answers.extend(verdict)  # none for a malformed notification
        elif message is not None:
            judged.messages.append(message)
            if isinstance(message, JSONRPCRequest):
                judged.waiting.append(coerce_request_id(message.id))
    log.info("a batch of %d message(s): %d served, %d answered at once", len(items), len(judged.messages),
             len(judged.answers))  # fmt: skip
    return judged


def agreed_version(message: JSONRPCMessage) -> str | None:
    """The protocol version an outgoing `initialize` result agrees, else None."""
    if isinstance(message, JSONRPCResponse) and isinstance(message.result, dict):
        version = message.result.get("protocolVersion")
        if isinstance(version, str) and "serverInfo" in message.result:
            return version
    return None


@dataclass
class _Open:
    waiting: list[Any]
    answers: list[str]


class Collector:
    """For stdio: holds the answers to a batch's requests until each has one, then gives them back together."""

    def __init__(self) -> None:
        self._open: list[_Open] = []

    def open(self, judged: Split) -> list[str] | None:
        """Start collecting for `judged`; the batch's answers at once (as JSON texts) when it awaits none."""
        answers = [json.dumps(a) for a in judged.answers]
        if not judged.waiting:
            return answers or None  # a batch of notifications only: no answer at all
        self._open.append(_Open(list(judged.waiting), answers))
        return None

    def hold(self, message: JSONRPCMessage, text: str) -> list[str] | None:
        """None when `message` answers no open batch; else [] while its batch still waits, or the whole batch."""
        if not isinstance(message, JSONRPCResponse | JSONRPCError) or message.id is None:
            return None
        return self._settle(message.id, text)

    def cancelled(self, request_id: Any) -> list[str] | None:
        """A request of a batch was cancelled: it will get no answer. The whole batch, if that was the last."""
        return self._settle(request_id, None) or None

    def _settle(self, request_id: Any, text: str | None) -> list[str] | None:
        rid = coerce_request_id(request_id)
        for batch in self._open:
            if rid in batch.waiting:
                batch.waiting.remove(rid)
                if text is not None:
                    batch.answers.append(text)
                if batch.waiting:
                    return []
                self._open.remove(batch)
                return batch.answers
        return None


def as_array(texts: Iterable[str]) -> bytes:
    return ("[" + ",".join(texts) + "]\n").encode()


@dataclass
class Taken:
    """What stdio does with a line that is a batch: answers to write alone, messages for the SDK, and the batch's
    answer to write once they are handed over (when it awaits no answer from the SDK)."""

    answers: list[dict[str, Any]]
    messages: list[JSONRPCMessage]
    ready: bytes | None = None


class StdioBatches:
    """A stdio session's batches: taken once it agreed a version that takes them, and their answers collected."""

    def __init__(self) -> None:
        self.version: str | None = None
        self._collector = Collector()

    def incoming(self, text: str) -> Taken | None:
        """None when `text` is not a batch; else what to do with it."""
        items = batch_items(text)
        if items is None:
            return None
        if not takes_batches(self.version):
            return Taken(refusal(items, self.version), [])
        judged = split(items, text)
        if not isinstance(judged, Split):
            return Taken(judged, [])
        ready = self._collector.open(judged)
        return Taken([], judged.messages, as_array(ready) if ready else None)

    def outgoing(self, message: JSONRPCMessage, text: str) -> bytes | None:
        """The bytes to write for `message`: its line, nothing while its batch waits, or the whole batch."""
        self.version = agreed_version(message) or self.version
        held = self._collector.hold(message, text)
        if held is None:
            return (text + "\n").encode()
        return as_array(held) if held else None

    def cancelled(self, message: JSONRPCMessage) -> bytes | None:
        """After a `notifications/cancelled`: the batch its request completes by getting no answer, if any."""
        if not isinstance(message, JSONRPCNotification) or message.method != "notifications/cancelled":
            return None
        request_id = cancelled_request_id_from_params(message.params)
        done = self._collector.cancelled(request_id) if request_id is not None else None
        return as_array(done) if done else None


def header_version(scope: Scope) -> str:
    """The protocol version of an HTTP request: its header, else the one the SDK assumes without one."""
    return Headers(scope=scope).get(MCP_PROTOCOL_VERSION_HEADER) or DEFAULT_NEGOTIATED_VERSION


async def http_batches(app: ASGIApp, scope: Scope, receive: Receive, send: Send, text: str) -> bool:
    """For the guard: a batch POSTed to Streamable HTTP (/mcp), served or refused by its request's protocol
    version; False for anything else, which the guard screens as one message."""
    items = batch_items(text) if scope.get("path") == "/mcp" else None
    if items is None:
        return False
    version = header_version(scope)
    judged = split(items, text) if takes_batches(version) else refusal(items, version)
    if isinstance(judged, Split):
        await serve_http_batch(app, scope, receive, send, judged)
    else:
        await JSONResponse(judged[0] if len(judged) == 1 else judged, status_code=400)(scope, receive, send)
    return True


async def serve_http_batch(app: ASGIApp, scope: Scope, receive: Receive, send: Send, judged: Split) -> None:
    """Serve each message of a batch POSTed to Streamable HTTP as a POST of its own, at once, and answer the
    batch with the array of its requests' answers (202 when it holds none). Each asks for JSON: a stream's
    progress notices have nowhere to go in an array."""
    found: list[dict[str, Any] | None] = [None] * len(judged.messages)
    statuses: list[int] = [0] * len(judged.messages)
    bodies: list[bytes] = [b""] * len(judged.messages)
    gone = anyio.Event()

    async def one(n: int, message: JSONRPCMessage) -> None:
        body = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"accept")]
        headers = [*kept, (b"content-length", str(len(body)).encode()), (b"accept", b"application/json")]
        captured = _Captured()
        # Each message as if it came alone, its call named for the scope check as the guard names a lone one.
        alone = {**scope, "headers": headers, RPC_CALL: call_of(message)}
        await app(alone, _replaying(body, gone), captured.send)
        statuses[n], bodies[n] = captured.status, captured.body
        if isinstance(message, JSONRPCRequest):
            found[n] = _answer_in(captured.body, message.id) or error(
                message.id, INTERNAL_ERROR, f"The request was not answered (HTTP {captured.status})."
            )

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        async with anyio.create_task_group() as each:
            for n, message in enumerate(judged.messages):
                each.start_soon(one, n, message)
        tg.cancel_scope.cancel()
    answers = [*judged.answers, *(a for a in found if a is not None)]
    if statuses and all(status == 404 for status in statuses):  # the session is gone: the client starts anew
        await Response(bodies[0], status_code=404, media_type="application/json")(scope, receive, send)
    elif answers:  # 400 when every member was refused, as the guard answers one refused message
        await JSONResponse(answers, status_code=200 if judged.messages else 400)(scope, receive, send)
    else:
        await Response(status_code=202)(scope, receive, send)


class _Captured:
    """What an app sends for one message of a batch: its status and body, kept instead of sent."""

    def __init__(self) -> None:
        self.status = 500
        self.body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


def _replaying(body: bytes, gone: anyio.Event) -> Receive:
    """A `receive` that hands over `body`, then waits for the client to go (a batch shares one connection)."""

    async def until_gone() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    return replaying(body, until_gone)


def _answer_in(body: bytes, request_id: Any) -> dict[str, Any] | None:
    """The answer to `request_id` in a response body: one JSON message, or the `data:` lines of an event stream."""
    texts = [body] if body.lstrip().startswith((b"{", b"[")) else [
        line[5:] for line in body.splitlines() if line.startswith(b"data:")
    ]  # fmt: skip
    for text in texts:
        try:
            parsed = json.loads(text)
        except ValueError:
            continue
        for message in parsed if isinstance(parsed, list) else [parsed]:
            if isinstance(message, dict) and "method" not in message and message.get("id") == request_id:
                return message
    return None
