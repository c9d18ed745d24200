"""Shutdown over HTTP keeps stdio's promise: the calls already received finish within the grace and are answered.

uvicorn stops on SIGTERM or SIGINT by closing every connection it can and waiting for the rest; sse-starlette,
which the SDK's event streams run on, watches uvicorn for that moment and cuts every stream within half a second,
a call's answer stream included. So here the first signal starts a drain before uvicorn hears of it: no new
connection is taken, idle ones close, and the requests received go on until each is answered, up to
FLASHSNAP_SHUTDOWN_GRACE_S. A tool call still running then is cut and answered with a `shutdown` error (with
`maybe_processed` and the upstream request id), as over stdio; only after that does uvicorn's own shutdown run.

"Answered" is read off the wire: a POST (Streamable HTTP) is answered when its response is complete; over the
legacy SSE transport, where a POST is only accepted (202) and its answer comes on the session's event stream, a
request is answered when an event carrying its id has been sent there. A `subscriptions/listen` POST is not
waited for: it is answered only when the stream closes, which the shutdown does once the calls are answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

import anyio
import uvicorn
from mcp.shared.dispatcher import coerce_request_id
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.tooling.calls import InFlight

log = logging.getLogger(__name__)
CUT_ANSWER_S = 5.0  # after the grace, how long the cut calls have to write their answers
_SESSION = re.compile(rb"session_id=([0-9a-fA-F]+)")


class Draining:
    """ASGI middleware that knows which requests received are still unanswered, so a shutdown can wait for them."""

    def __init__(self, app: ASGIApp, *, calls: InFlight, close_streams: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self.calls = calls
        self.close_streams = close_streams  # ends the listen streams gracefully, once the calls are answered
        self._busy = 0  # requests other than GET in progress: a Streamable HTTP POST is answered when it ends
        self._awaited: dict[str, set[Any]] = {}  # SSE session -> ids of requests accepted and not yet answered
        self._idle: anyio.Event | None = None

    @property
    def idle(self) -> bool:
        return self._busy == 0 and not any(self._awaited.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "GET":  # a long-lived event stream, or a probe: never waited for itself
            if scope.get("path") == "/sse":
                await self._stream(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        else:
            self._busy += 1
            busy = [True]

            async def reading() -> Message:
                message = await receive()
                if busy[0] and message["type"] == "http.request" and _listens(message.get("body", b"")):
                    busy[0] = False  # a listen stream stays open as long as its client listens: not awaited
                    self._busy -= 1
                    self._changed()
                return message

            try:
                await self._request(scope, reading, send)
            finally:
                if busy[0]:
                    self._busy -= 1
                    self._changed()

    async def settled(self) -> None:
        """Return once every request received has been answered."""
        while not self.idle:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def drain(self, grace_s: float) -> None:
        """Wait up to the grace for every request received to be answered; then cut the calls still running and
        give their answers a moment to go out."""
        with anyio.move_on_after(grace_s):
            await self.settled()
        if not self.idle:
            cut = self.calls.cut()
            log.warning("shutdown grace (%.0f s) over: cut off %d call(s) still running", grace_s, cut)
            with anyio.move_on_after(CUT_ANSWER_S):
                await self.settled()

    def _changed(self) -> None:
        if self._idle is not None and self.idle:
            self._idle.set()

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id", [None])[0]
        if session is None or session not in self._awaited:
            await self.app(scope, receive, send)
            return
        # A POST to an SSE session: the ids of its requests are awaited on the session's stream once accepted.
        ids: set[Any] = set()

        async def reading() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                ids.update(_request_ids(message.get("body", b"")))
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 202:
                self._awaited[session].update(ids)
            await send(message)

        await self.app(scope, reading, sending)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        session: list[str] = []  # the SSE session this stream serves, once its endpoint event named it

        async def sending(message: Message) -> None:
            await send(message)
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if not session:
                if found := _SESSION.search(body):
                    session.append(found.group(1).decode())
                    self._awaited.setdefault(session[0], set())
            elif b'"id"' in body:
                self._awaited[session[0]].difference_update(_answered_ids(body))
                self._changed()

        try:
            await self.app(scope, receive, sending)
        finally:
            if session:  # the stream is gone: nothing more will be answered on it
                self._awaited.pop(session[0], None)
                self._changed()


def _request_ids(body: bytes) -> list[Any]:
    """The ids of the JSON-RPC requests in a POSTed body (one message or a batch), as the SDK correlates them."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    messages = parsed if isinstance(parsed, list) else [parsed]
    return [
        coerce_request_id(m["id"]) for m in messages if isinstance(m, dict) and "method" in m and _is_id(m.get("id"))
    ]


def _listens(body: bytes) -> bool:
    """Whether a POST's body is a `subscriptions/listen` request (2026-07-28): its answer comes when it closes."""
    if b"subscriptions/listen" not in body:
        return False
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == "subscriptions/listen"


def _answered_ids(body: bytes) -> list[Any]:
    """The ids of the JSON-RPC answers in the `data:` lines of an event-stream chunk."""
    found = []
    for line in body.splitlines():
        if line.startswith(b"data:"):
            try:
                message = json.loads(line[5:])
            except ValueError:
                continue
            if isinstance(message, dict) and "method" not in message and _is_id(message.get("id")):
                found.append(coerce_request_id(message["id"]))
    return found


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def draining_of(app: Any) -> Draining | None:
    """The `Draining` layer of an ASGI app built by `build_http_app` (each middleware holds the next as `.app`)."""
    for _ in range(16):
        if isinstance(app, Draining):
            return app
        app = getattr(app, "app", None)
    return None


class DrainingServer(uvicorn.Server):
    """uvicorn, with the first SIGTERM or SIGINT draining the app's requests before its own shutdown begins.

    A second signal ends the drain early (the calls still running are cut and answered); a third is uvicorn's own.
    """

    def __init__(self, config: uvicorn.Config, *, grace_s: float) -> None:
        super().__init__(config)
        self._grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain: anyio.CancelScope | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler runs between two steps of the loop, outside any task: what it starts, it schedules.
        if self.should_exit or self._loop is None:
            super().handle_exit(sig, frame)
        elif self._draining:
            self._loop.call_soon_threadsafe(self._end_grace)
        elif (draining := draining_of(self.config.loaded_app)) is None:
            super().handle_exit(sig, frame)
        else:
            log.info("received %s: finishing the calls in flight", signal.Signals(sig).name)
            self._draining = True
            self._loop.call_soon_threadsafe(self._start, draining, sig)

    def _start(self, draining: Draining, sig: int) -> None:
        task = asyncio.get_running_loop().create_task(self._drained(draining, sig))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end_grace(self) -> None:
        if self._drain is not None:
            self._drain.cancel()

    async def _drained(self, draining: Draining, sig: int) -> None:
        for server in self.servers:
            server.close()  # no new connection
        for connection in list(self.server_state.connections):
            connection.shutdown()  # an idle one closes now, a busy one after its response
        self._drain = anyio.CancelScope()  # made in the task: anyio finds its event loop only there
        with self._drain:
            await draining.drain(self._grace_s)
        if self._drain.cancelled_caught:  # a second signal ended the grace early: cut what still runs
            draining.calls.cut()
            with anyio.move_on_after(CUT_ANSWER_S):
                await draining.settled()
        draining.close_streams()  # each listen stream sends its result: its POST is answered, nothing waits on it
        super().handle_exit(sig, None)  # now uvicorn's shutdown, and sse-starlette's cut of the event streams
