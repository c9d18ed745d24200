"""Serving over stdio: every malformed request answered rather than dropped, and a shutdown that drains.

Each line is judged once by the JSON-RPC guard (transports/jsonrpc_guard.py), which parses and validates it; a
good message goes to the SDK as it is (the SDK's own stdio reader would parse the text a second time), a bad one is
answered here.

On stdin's end, SIGTERM or SIGINT nothing more is read; the requests already read get
`FLASHSNAP_SHUTDOWN_GRACE_S` to finish and be answered. A call still running then is cut off and answered with a
`shutdown` error (with `maybe_processed` and the upstream request id it was in); then the process exits.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import stat
import sys
import threading
from asyncio.streams import FlowControlMixin
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp.shared.message import SessionMessage
from mcp_types import (
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)

from server.sdk_seams import create_context_streams, lowlevel_server
from server.tooling.calls import InFlight
from server.transports.batches import StdioBatches, Taken
from server.transports.jsonrpc_guard import inspect, not_utf8

log = logging.getLogger(__name__)
READ_BYTES = 1 << 16
CUT_ANSWER_S = 5.0  # after the grace, how long the cut calls have to write their answers


class _Pending:
    """The ids of requests read and not yet answered; `settled` is set whenever none is left.

    A request the client cancelled (`notifications/cancelled`) is settled when the cancel is read: the SDK never
    answers it (the spec says not to), so waiting for its answer held the exit for the whole grace and more.
    Ids are compared as the SDK correlates them ("7" and 7 are one id). A `subscriptions/listen` stream is not
    waited for: it stays open as long as the session does, and ends with it."""

    def __init__(self) -> None:
        self.ids: set[Any] = set()
        self.settled = anyio.Event()
        self.settled.set()

    def read(self, message: Any) -> None:
        if isinstance(message, JSONRPCRequest) and message.method != "subscriptions/listen":
            self.ids.add(coerce_request_id(message.id))
            self.settled = anyio.Event() if self.settled.is_set() else self.settled
        elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
            cancelled = cancelled_request_id_from_params(message.params)
            if cancelled is not None:
                self._settle(cancelled)

    def answered(self, message: Any) -> None:
        if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
            self._settle(message.id)

    def _settle(self, request_id: Any) -> None:
        self.ids.discard(coerce_request_id(request_id))
        if not self.ids:
            self.settled.set()


def _is_pipe(fd: int) -> bool:
    """A pipe or socket: served by the event loop itself. A file or a terminal is read and written by a thread
    (making a terminal non-blocking would leave it so for the shell after us)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _wire() -> tuple[int, int]:
    """stdin's descriptor, and a private copy of stdout's, whose number then points at stderr: a stray print from
    any library lands in the log, never in the protocol."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    try:
        private = os.dup(stdout)
        os.dup2(sys.stderr.fileno(), stdout)
    except OSError:
        return stdin, stdout
    return stdin, private


class NotUTF8(bytes):
    """A line of stdin whose bytes are not valid UTF-8: answered -32700, never decoded with replacements."""


Line = str | NotUTF8


class _Lines:
    """Splits the bytes of stdin into lines (LF; a CR before it is JSON whitespace) and decodes each one strictly.

    The split is on bytes: no byte of a multi-byte UTF-8 sequence is 0x0A, so a line ends where its LF is, and a
    character cut between two reads is whole again in the line. A line that is not UTF-8 comes out as `NotUTF8`.
    """

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> list[Line]:
        *complete, self._rest = (self._rest + chunk).split(b"\n")
        return [_decoded(line) for line in complete]

    def end(self) -> list[Line]:
        rest, self._rest = self._rest, b""
        return [_decoded(rest)] if rest.strip() else []


def _decoded(line: bytes) -> Line:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return NotUTF8(line)


def _read_lines(fd: int, lines: ObjectSendStream[Line | None], token: Any) -> None:
    """For a file or terminal, in a daemon thread, so a shutdown by signal never waits for a line that may not
    come. Plain `os.read` (no buffered reader, whose lock a daemon thread would hold at interpreter exit)."""
    splitter = _Lines()
    try:
        while chunk := os.read(fd, READ_BYTES):
            for line in splitter.feed(chunk):
                anyio.from_thread.run(lines.send, line, token=token)
        for line in splitter.end():
            anyio.from_thread.run(lines.send, line, token=token)
        anyio.from_thread.run(lines.send, None, token=token)
    except (OSError, RuntimeError, anyio.ClosedResourceError, anyio.BrokenResourceError):
        return  # stdin or the loop is gone: the process is on its way out


class _Out:
    """stdout: an asyncio pipe transport (non-blocking, buffered, drained) for a pipe or socket, else a thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._writer: asyncio.StreamWriter | None = None
        self._file: io.BufferedWriter | None = None

    async def open(self) -> None:
        if _is_pipe(self._fd):
            loop = asyncio.get_running_loop()
            pipe = os.fdopen(self._fd, "wb", buffering=0, closefd=False)
            transport, protocol = await loop.connect_write_pipe(FlowControlMixin, pipe)
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        else:
            self._file = os.fdopen(self._fd, "wb", closefd=False)

    async def write(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)
            await self._writer.drain()
        elif self._file is not None:
            await anyio.to_thread.run_sync(_write_all, self._file, data)


def _write_all(file: io.BufferedWriter, data: bytes) -> None:
    file.write(data)
    file.flush()


async def _pipe_lines(fd: int, handle: Any) -> None:
    """Read a pipe or socket on the event loop itself, handing each line to `handle` (None at the end)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", closefd=False))
    splitter = _Lines()
    while chunk := await reader.read(READ_BYTES):
        for line in splitter.feed(chunk):
            await handle(line)
    for line in splitter.end():
        await handle(line)
    await handle(None)


async def serve_stdio(app: MCPServer[Any], *, grace_s: float = 10.0, in_flight: InFlight | None = None) -> None:
    """`app.run("stdio")`, with the guard in front of the SDK and a drain at the end."""
    stdin, stdout = _wire()
    calls = in_flight if in_flight is not None else getattr(app, "in_flight", InFlight())
    to_sdk, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, from_sdk = create_context_streams[SessionMessage](0)
    out = _Out(stdout)
    await out.open()
    pending = _Pending()
    stop, ended = anyio.Event(), anyio.Event()

    batches = StdioBatches()

    async def emit(data: bytes | None) -> None:
        try:
            if data is not None:
                await out.write(data)
        except (OSError, ValueError, RuntimeError):
            log.info("stdout is closed: an answer could not be written")

    async def write(message: Any) -> None:
        await emit(batches.outgoing(message, message.model_dump_json(by_alias=True, exclude_unset=True)))
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

    async def handle(line: Line | None) -> None:
        if line is None:
            log.info("stdin closed: finishing the calls in flight")
            ended.set()
            return
        taken = None if isinstance(line, NotUTF8) else batches.incoming(line)
        if taken is None:
            answers, message = (not_utf8(line), None) if isinstance(line, NotUTF8) else inspect(line)
            taken = Taken(answers or [], [message] if message is not None and not answers else [])
        for answer in taken.answers:
            await write(jsonrpc_message_adapter.validate_python(answer))
        for message in taken.messages:
            pending.read(message)
            await to_sdk.send(SessionMessage(message))
            await emit(batches.cancelled(message))  # a cancel may complete a batch: its last request goes unanswered
        await emit(taken.ready)

    async def read_thread_lines() -> None:
        lines_in, lines = anyio.create_memory_object_stream[Line | None](16)
        threading.Thread(
            target=_read_lines, args=(stdin, lines_in, anyio.lowlevel.current_token()), daemon=True, name="stdin"
        ).start()
        async with lines, lines_in:
            while not ended.is_set():
                await handle(await lines.receive())

    async def run_sdk() -> None:
        server = lowlevel_server(app)  # what MCPServer.run_stdio_async runs, with our streams
        try:
            await server.run(read_stream, write_stream, server.create_initialization_options())
        finally:
            await write_stream.aclose()  # the writer flushes what is left, then ends

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        tg.start_soon(run_sdk)
        tg.start_soon(signals)
        async with anyio.create_task_group() as reading:
            if _is_pipe(stdin):
                reading.start_soon(_pipe_lines, stdin, handle)
            else:
                reading.start_soon(read_thread_lines)
            await _first_of(stop, ended)
            reading.cancel_scope.cancel()  # nothing more is read
        await _drain(pending, calls, grace_s)
        await to_sdk.aclose()  # the SDK's loop ends; its lifespan closes the upstream clients
        with anyio.move_on_after(CUT_ANSWER_S + grace_s):  # never hang on the way out
            await written.wait()
        tg.cancel_scope.cancel()  # the signal watcher


async def _first_of(*events: anyio.Event) -> None:
    """Return when the first of `events` is set."""

    async def wait(event: anyio.Event, scope: anyio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    async with anyio.create_task_group() as tg:
        for event in events:
            tg.start_soon(wait, event, tg.cancel_scope)


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
