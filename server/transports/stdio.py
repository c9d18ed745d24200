"""Serving over stdio, every malformed request answered rather than dropped (see transports/jsonrpc_guard.py)."""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

from server.transports.jsonrpc_guard import judge


class GuardedStdin:
    """stdin as the SDK reads it, line by line, less the lines `judge` refuses: those are answered on stdout."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines
        self._replies: MemoryObjectSendStream[SessionMessage] | None = None
        self._ready = anyio.Event()

    def answer_on(self, replies: MemoryObjectSendStream[SessionMessage]) -> None:
        self._replies = replies
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._guarded()

    async def _guarded(self) -> AsyncIterator[str]:
        async for line in self._lines:
            verdict = judge(line)
            if verdict is None:
                yield line
                continue
            await self._ready.wait()
            assert self._replies is not None
            for answer in verdict:
                await self._replies.send(SessionMessage(jsonrpc_message_adapter.validate_python(answer)))


async def serve_stdio(app: MCPServer[Any]) -> None:
    """`app.run("stdio")`, with the guard in front of the SDK's reader."""
    stdin = anyio.wrap_file(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))
    guarded = GuardedStdin(aiter(stdin))
    async with stdio_server(stdin=guarded) as (read_stream, write_stream):  # type: ignore[arg-type]
        guarded.answer_on(write_stream)
        server = app._lowlevel_server  # what MCPServer.run_stdio_async runs, with our streams
        await server.run(read_stream, write_stream, server.create_initialization_options())
