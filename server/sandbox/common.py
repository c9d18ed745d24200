"""What both emulated APIs share: request counting, fault injection, error bodies, request ids."""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.sandbox.records import Fault
from server.sandbox.state import EmulatorState


def error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The contract's generic error body."""
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


async def json_body(request: Request) -> Any:
    """A request's JSON body, or None when it is empty or not JSON (each route then says what is wrong)."""
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class EmulatedAPI:
    """Base of the route handlers: every request is counted, delayed and faulted the same way."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def _begin(self, route: str) -> tuple[Response | None, Fault | None]:
        """Count the request, apply latency and any injected fault; a status fault answers at once."""
        state = self.state
        state.arrived(route)
        with state.lock:
            latency = state.latency_s.get(route, 0.0)
        if latency:
            await anyio.sleep(latency)
        fault = state.take_fault(route)
        if fault is not None and fault.status == 429:
            wait = fault.retry_after_s or 1
            headers = {"Retry-After": str(wait)} if fault.retry_after_header else None
            return error(
                429, f"Rate limit exceeded. Try again in {wait} seconds.", "RATE_LIMIT_EXCEEDED", headers
            ), fault
        if fault is not None and fault.status is not None and fault.body == "wrong_type":
            return BROKEN["wrong_type"](fault.status), fault
        if fault is not None and fault.status is not None:
            code = "BAD_REQUEST" if 400 <= fault.status < 500 else "INTERNAL_ERROR"
            return error(fault.status, fault.message or "Injected upstream failure.", code), fault
        if fault is not None and fault.body is not None:
            return BROKEN[fault.body](), fault
        if fault is not None and fault.flood_bytes is not None:
            return Flood(fault.flood_bytes, lambda n: self._count_sent(route, n)), fault
        return None, fault

    def _count_sent(self, route: str, n: int) -> None:
        with self.state.lock:
            self.state.sent_bytes[route] += n

    def _done(self, route: str, response: Response) -> Response:
        self.state.record(route, response.status_code)
        return response


OVERSIZED_BYTES = 32 * 1024 * 1024
FLOOD_CHUNK = 64 * 1024


class Flood(Response):
    """A 200 of `total` bytes of a JSON object that never closes, sent while the client is still there: each chunk
    is counted (`on_sent`) once the server took it, and the sending stops when the client goes away."""

    def __init__(self, total: int, on_sent: Callable[[int], None]) -> None:
        super().__init__(status_code=200, media_type="application/json")
        self.total = total
        self.on_sent = on_sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json")]  # no length: it streams
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        gone = anyio.Event()

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async with anyio.create_task_group() as group:
            group.start_soon(listen)
            chunk, sent = b'{"access_token": "' + b"x" * (FLOOD_CHUNK - 18), 0
            while sent < self.total and not gone.is_set():
                piece = chunk[: self.total - sent]
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += len(piece)
                self.on_sent(len(piece))
                chunk = b"x" * FLOOD_CHUNK
                await anyio.lowlevel.checkpoint()  # the listener hears a disconnect between chunks
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()


async def _reset_after_headers() -> AsyncIterator[bytes]:
    yield b'{"data": ['
    raise ConnectionResetError("injected: the connection drops mid-body")


# A 200 whose body is broken, one way each: what a proxy, a deploy or a bug upstream can send.
BROKEN: dict[str, Callable[..., Response]] = {
    "malformed": lambda status=200: Response(b'{"data": [{"id": ', status, media_type="application/json"),
    "wrong_type": lambda status=200: Response(
        b"<html><body>Down for maintenance</body></html>", status, media_type="text/html"
    ),
    "oversized": lambda status=200: Response(b" " * OVERSIZED_BYTES, status, media_type="application/json"),
    "reset": lambda status=200: StreamingResponse(_reset_after_headers(), status, media_type="application/json"),
}


class RequestIdMiddleware:
    """Stamps `x-request-id` (a UUID v4) on every response, errors and streams included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4()).encode()

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, stamped)
