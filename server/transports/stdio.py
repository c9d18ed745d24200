"""Serving over stdio: every malformed request answered rather than dropped, and a shutdown that drains.

Each line is judged once by the JSON-RPC guard (transports/jsonrpc_guard.py), which parses and validates it; a
good message goes to the SDK as it is (the SDK's own stdio reader would parse the text a second time), a bad one is
answered here.

On stdin's end, SIGTERM or SIGINT nothing more is read; the requests already read get
`FLASHSNAP_SHUTDOWN_GRACE_S` to finish and be answered. A call still running then is cut off and answered with a
`shutdown` error (with `maybe_processed` and the upstream request id it was in); then the process exits.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import signal
import sys
import threading
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCRequest, JSONRPCResponse, jsonrpc_message_adapter

from server.calls import InFlight
from server.transports.jsonrpc_guard import inspect

log = logging.getLogger(__name__)
READ_BYTES = 1 << 16
CUT_ANSWER_S = 5.0  # after the grace, how long the cut calls have to write their answers


class _Pending:
    """The ids of requests read and not yet answered; `settled` is set whenever none is left."""

    def __init__(self) -> None:
        self.ids: set[Any] = set()
        self.settled = anyio.Event()
        self.settled.set()

    def read(self, message: Any) -> None:
        if isinstance(message, JSONRPCRequest):
            self.ids.add(message.id)
            self.settled = anyio.Event() if self.settled.is_set() else self.settled

    def answered(self, message: Any) -> None:
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            self.ids.discard(message.id)
            if not self.ids:
                self.settled.set()


def _wire() -> tuple[int, io.TextIOWrapper]:
    """stdin's descriptor, and stdout on a private copy of fd 1, whose number then points at stderr: a stray print
    from any library lands in the log, never in the protocol."""
    stdin = sys.stdin.fileno()
    try:
        private = os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        stdout = io.TextIOWrapper(os.fdopen(private, "wb", closefd=True), encoding="utf-8", newline="\n")
    except (OSError, ValueError, io.UnsupportedOperation):
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")  # type: ignore[arg-type]
    return stdin, stdout


def _read_lines(fd: int, lines: ObjectSendStream[str | None], token: Any) -> None:
    """In a daemon thread, so a shutdown by signal never waits for a line that may not come. Plain `os.read`
    (no buffered reader, whose lock a daemon thread would hold at interpreter exit); UTF-8, a bad byte replaced."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    try:
        while chunk := os.read(fd, READ_BYTES):
            *complete, rest = (rest + decoder.decode(chunk)).split("\n")
            for line in complete:
                anyio.from_thread.run(lines.send, line + "\n", token=token)
        if rest := rest + decoder.decode(b"", final=True):
            anyio.from_thread.run(lines.send, rest, token=token)
        anyio.from_thread.run(lines.send, None, token=token)
    except (OSError, RuntimeError, anyio.ClosedResourceError, anyio.BrokenResourceError):
        return  # stdin or the loop is gone: the process is on its way out


async def serve_stdio(app: MCPServer[Any], *, grace_s: float = 10.0, in_flight: InFlight | None = None) -> None:
    """`app.run("stdio")`, with the guard in front of the SDK and a drain at the end."""
    stdin, stdout = _wire()
    calls = in_flight if in_flight is not None else getattr(app, "in_flight", InFlight())
    to_sdk, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, from_sdk = create_context_streams[SessionMessage](0)
    lines_in, lines = anyio.create_memory_object_stream[str | None](16)
    pending = _Pending()
    stop = anyio.Event()

    async def write(message: Any) -> None:
        text = message.model_dump_json(by_alias=True, exclude_unset=True)
        try:
            await anyio.to_thread.run_sync(_write_line, stdout, text)
        except (OSError, ValueError):
            log.info("stdout is closed: an answer could not be written")
        pending.answered(message)

    written = anyio.Event()

    async def writer() -> None:
        try:
            async with from_sdk:
                async for session_message in from_sdk:
                    await write(session_message.message)
        finally:
            written.set()

    async def signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for signum in received:
                log.info("received %s: finishing the calls in flight", signal.Signals(signum).name)
                stop.set()
                return

    async def reader() -> None:
        async with lines:
            while True:
                line = await lines.receive()
                if line is None:
                    log.info("stdin closed: finishing the calls in flight")
                    return
                answers, message = inspect(line)
                if answers:
                    for answer in answers:
                        await write(jsonrpc_message_adapter.validate_python(answer))
                    continue
                if message is not None:
                    pending.read(message)
                    await to_sdk.send(SessionMessage(message))

    async def run_sdk() -> None:
        server = app._lowlevel_server  # what MCPServer.run_stdio_async runs, with our streams
        try:
            await server.run(read_stream, write_stream, server.create_initialization_options())
        finally:
            await write_stream.aclose()  # the writer flushes what is left, then ends

    threading.Thread(
        target=_read_lines, args=(stdin, lines_in, anyio.lowlevel.current_token()), daemon=True, name="stdin"
    ).start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        tg.start_soon(run_sdk)
        tg.start_soon(signals)
        async with anyio.create_task_group() as reading:

            async def until_stopped() -> None:
                await stop.wait()
                reading.cancel_scope.cancel()

            reading.start_soon(until_stopped)
            await reader()
            reading.cancel_scope.cancel()
        await _drain(pending, calls, grace_s)
        await to_sdk.aclose()  # the SDK's loop ends; its lifespan closes the upstream clients
        with anyio.move_on_after(CUT_ANSWER_S + grace_s):  # never hang on the way out
            await written.wait()
        tg.cancel_scope.cancel()  # the signal watcher
    await lines_in.aclose()


async def _drain(pending: _Pending, calls: InFlight, grace_s: float) -> None:
    """Wait up to the grace for every request read to be answered; then cut the calls still running."""
    with anyio.move_on_after(grace_s):
        await pending.settled.wait()
    if pending.ids:
        cut = calls.cut()
        log.warning("shutdown grace (%.0f s) over: cut off %d call(s) still running", grace_s, cut)
        with anyio.move_on_after(CUT_ANSWER_S):
            await pending.settled.wait()


def _write_line(stdout: io.TextIOWrapper, text: str) -> None:
    stdout.write(text + "\n")
    stdout.flush()
