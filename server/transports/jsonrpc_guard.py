"""Every JSON-RPC request that carries an id gets an answer, however malformed the rest of it is.

The SDK's transports drop some malformed messages without a word (a lone surrogate, `params` that
is not an object, `"jsonrpc": "1.0"`, a batch, nesting thousands deep), and the client waits for
its own timeout. This guard judges each incoming message before the SDK sees it: a good one
passes unchanged; a bad one is answered here with the JSON-RPC error it deserves and its id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32602, -32603
MAX_DEPTH = 64  # far beyond any real tool argument; Python's own parsers give up near 1,000

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON text can only carry a surrogate written raw or as an escape; without either, no string in it holds one.
_MAY_HOLD_SURROGATE = re.compile("[\ud800-\udfff]|\\\\u[dD][89abcdefABCDEF]")
_TOP_LEVEL_ID = re.compile(r'\s*:\s*(-?\d{1,18}(?![\d.eE])|"(?:[^"\\]|\\.){0,200}")')


# Set on the ASGI scope of a POST whose message may go on: (method, params.name, id); None for a reply. The scope
# check reads it (server/transports/identity.py) instead of parsing the body a second time.
RPC_CALL = "flashsnap.rpc_call"

Verdict = list[dict[str, Any]] | None  # None: the message may go on; else the error answers to send (maybe none)


def judge(text: str) -> Verdict:
    """None when the message may go on to the SDK; else the error answers to send instead (maybe none)."""
    return _screen(text)[0]


def inspect(text: str) -> tuple[Verdict, JSONRPCMessage | None]:
    """`judge`, and for a message that may go on, the message as the SDK reads it: parsed and validated once,
    here, so the transport hands it over instead of the SDK parsing the text again."""
    verdict, message, _ = _screen(text)
    return verdict, message


def screen(text: str) -> tuple[Verdict, bytes | None]:
    """For HTTP, which hands the SDK the body itself: `judge`, and the body to pass on in its place when an
    unreadable reply goes on as an error reply (see `_reply`), else None."""
    verdict, _, substitute = _screen(text)
    return verdict, None if substitute is None else json.dumps(substitute).encode()


def not_utf8(raw: bytes) -> list[dict[str, Any]]:
    """The answer to a message whose bytes are not UTF-8 as RFC 3629 defines it (a lone continuation byte, an
    overlong form, an encoded surrogate, a cut sequence, F5-FF): -32700 with its id when the id itself can be read.
    Nothing in it is used: a replacement character put in the user's text would be saved as if they wrote it."""
    msg_id = _top_level_id(raw.decode("utf-8", errors="replace"))
    if isinstance(msg_id, str) and "\ufffd" in msg_id:
        msg_id = None  # the bad bytes are in the id itself: answering another id would misdirect the error
    reason = "Parse error: the message is not valid UTF-8; nothing in it was used."
    log.info("answered a message that is not valid UTF-8")
    return [_error(msg_id, PARSE_ERROR, reason)]


def _screen(text: str) -> tuple[Verdict, JSONRPCMessage | None, dict[str, Any] | None]:
    if not text.strip():
        return [], None, None
    return _inspect(text)


def _inspect(text: str) -> tuple[Verdict, JSONRPCMessage | None, dict[str, Any] | None]:
    """The verdict, the validated message, and the message put in its place (only ever for a reply)."""
    if _too_deep(text):
        reason = f"The message is nested deeper than {MAX_DEPTH} levels."
        return [_error(_top_level_id(text), INVALID_REQUEST, reason)], None, None
    try:
        message = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return [_error(_top_level_id(text), PARSE_ERROR, "Parse error: the message is not valid JSON.")], None, None
    if isinstance(message, list):
        reason = "Batches are not supported: send one JSON-RPC message at a time."
        return refuse_batch(message, reason), None, None
    return judge_parsed(message, text)


def batch_items(text: str) -> list[Any] | None:
    """The messages of `text` when it is a JSON-RPC batch (a JSON array, within the depth bound), else None: a text
    that is anything else, or broken, is screened as one message."""
    if not text.lstrip().startswith("[") or _too_deep(text):
        return None
    try:
        items = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    return items if isinstance(items, list) else None


def refuse_batch(items: list[Any], reason: str) -> list[dict[str, Any]]:
    """A batch refused whole: each request in it answered with `reason`, or one answer when none has an id."""
    ids = [m["id"] for m in items if isinstance(m, dict) and _valid_id(m.get("id")) and "method" in m]
    return [_error(i, INVALID_REQUEST, reason) for i in ids] or [_error(None, INVALID_REQUEST, reason)]


def judge_parsed(message: Any, text: str) -> tuple[Verdict, JSONRPCMessage | None, dict[str, Any] | None]:
    """`_inspect` of one message already parsed (alone, or one of a batch) from `text`."""
    if not isinstance(message, dict):
        return [_error(None, INVALID_REQUEST, "A JSON-RPC message must be a JSON object.")], None, None
    if "method" not in message:  # a reply to a request of the server's (a question put to the user)
        return _reply(message)
    has_id = "id" in message
    msg_id = message.get("id")
    if has_id and not _valid_id(msg_id):
        return [_error(None, INVALID_REQUEST, "The id must be a string or an integer.")], None, None
    problem = _problem(message, text)
    if isinstance(problem, tuple):
        code, reason = problem
        if not has_id:
            log.info("dropped a malformed notification: %s", reason)
            return [], None, None
        log.info("answered a malformed request: %s", reason)
        return [_error(msg_id, code, reason)], None, None
    return None, problem, None


def _reply(message: dict[str, Any]) -> tuple[Verdict, JSONRPCMessage | None, dict[str, Any] | None]:
    """A client's reply as the SDK reads it. One the SDK cannot read, but whose id says what it answers, goes on
    as an error reply with that id: dropped, it would leave the server's request (and the tool call waiting on
    it) open until its timeout. Without a usable id, there is nothing to answer: dropped."""
    try:
        return None, jsonrpc_message_adapter.validate_python(message, by_name=False), None
    except ValidationError:
        if not _valid_id(message.get("id")):
            return None, None, None  # as before the guard: the SDK ignores it (HTTP: answers it 400)
        log.info("a client's reply could not be read; it goes on as an error reply")
        unreadable = _error(message["id"], INTERNAL_ERROR, "The client's reply could not be read.")
        return None, jsonrpc_message_adapter.validate_python(unreadable, by_name=False), unreadable


def _problem(message: dict[str, Any], text: str) -> tuple[int, str] | JSONRPCMessage:
    """What is wrong with the message (a JSON-RPC error code and reason), else the message validated."""
    if message.get("jsonrpc") != "2.0":
        return INVALID_REQUEST, 'Only JSON-RPC "2.0" is spoken here.'
    if not isinstance(message.get("method"), str):
        return INVALID_REQUEST, "The method must be a string."
    if "params" in message and not isinstance(message["params"], dict):
        return INVALID_PARAMS, "Invalid params: params must be a JSON object."
    if _MAY_HOLD_SURROGATE.search(text) and _has_surrogate(message):
        return INVALID_PARAMS, "Invalid params: a string holds a lone surrogate, which is not valid Unicode."
    try:
        return jsonrpc_message_adapter.validate_python(message, by_name=False)
    except ValidationError:
        return INVALID_REQUEST, "The message is not a valid JSON-RPC request."


def error(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error answer."""
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


_error = error


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # built once: json.loads with an option builds one a call


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # the common case costs two C-speed counts
        return False
    depth = 0
    for token in _TOKENS.finditer(text):
        kind = token.group()
        if kind in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif kind in "]}":
            depth -= 1
    return False


def _top_level_id(text: str) -> Any:
    """The id of a message too broken to parse, found at the top level of its text; None when there is none."""
    depth = 0
    tokens = list(_TOKENS.finditer(text))
    for n, token in enumerate(tokens):
        kind = token.group()
        if kind in "[{":
            depth += 1
        elif kind in "]}":
            depth -= 1
        elif depth == 1 and kind == '"id"' and (n == 0 or tokens[n - 1].group() != '"id"'):
            found = _TOP_LEVEL_ID.match(text, token.end())
            if found:
                try:
                    value = json.loads(found.group(1))
                except ValueError:
                    return None
                return value if _valid_id(value) else None
    return None


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# Given the app, the request and its body's text: True once it has answered the body as a batch, else False.
BatchHandler = Callable[[ASGIApp, Scope, Receive, Send, str], Awaitable[bool]]


class GuardedHTTP:
    """ASGI middleware: a POSTed body must arrive whole, in time and within its size (else 408 or 413); a
    JSON-RPC message that `judge` refuses is answered here, 400 with its error. A batch goes to `batches` first
    (server/transports/batches.py), which serves it where the protocol version takes batches."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        read_timeout_s: float = 10.0,
        max_body_bytes: int = 1_048_576,
        batches: BatchHandler | None = None,
    ) -> None:
        self.app = app
        self._read_timeout_s = read_timeout_s
        self._max_body_bytes = max_body_bytes
        self._batches = batches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        # A body that trickles in holds a connection and a task: it must arrive whole in time.
        with anyio.move_on_after(self._read_timeout_s) as deadline:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self._max_body_bytes:
                    await JSONResponse({"error": "The request body is too large."}, status_code=413)(
                        scope, receive, send
                    )
                    return
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            late = JSONResponse({"error": "The request body did not arrive in time."}, status_code=408)
            await late(scope, receive, send)
            return
        body = b"".join(chunks)
        substitute: dict[str, Any] | None = None
        rpc: JSONRPCMessage | None = None
        verdict: Verdict
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            verdict = not_utf8(body)
        else:
            if self._batches is not None and await self._batches(self.app, scope, receive, send, text):
                return
            verdict, rpc, substitute = _screen(text)
        if verdict:
            answer = verdict[0] if len(verdict) == 1 else verdict
            await JSONResponse(answer, status_code=400)(scope, receive, send)
            return
        scope[RPC_CALL] = call_of(rpc)
        replaced = json.dumps(substitute).encode() if substitute is not None else body
        await self.app(scope, replaying(replaced, receive), send)


def call_of(message: JSONRPCMessage | None) -> tuple[str | None, object, object]:
    """(method, params.name, id) of a request or notification; Nones for a reply or nothing."""
    method = getattr(message, "method", None)
    params = getattr(message, "params", None)
    name = params.get("name") if isinstance(params, dict) else getattr(params, "name", None)
    return (method if isinstance(method, str) else None), name, getattr(message, "id", None)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over `body`, read whole already, then whatever `receive` says (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
