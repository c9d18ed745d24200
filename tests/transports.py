"""One server, reached the ways clients reach it: in memory, over Streamable HTTP, and as a stdio subprocess.

`serve(transport, ...)` takes the command's own flags (`--read-only`, `--tools ...`): the subprocess gets them
as they are, the in-process servers read them with the command's parser, so one table of cases runs on each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.session import ElicitationFnT, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client

from server.app import create_app
from server.cli.main import parse_args
from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import NO_QUESTIONS
from tests.test_stdio import params

TRANSPORTS = ["memory", "http", "stdio"]


def settings(emulator: Emulator, *flags: str, **overrides: Any) -> Settings:
    """What `flashsnap-mcp *flags` would run with against the emulator."""
    args = parse_args(flags)
    chosen = {"toolsets": args.toolsets, "tools": args.tools, "exclude_tools": args.exclude_tools}
    environ = {**NO_QUESTIONS, **emulator.environment()}  # as conftest's `connect` and the subprocesses run
    return Settings.from_env(environ, read_only=args.read_only, **chosen, **overrides)


@asynccontextmanager
async def http_client(
    url: str,
    mode: str,
    message_handler: MessageHandlerFnT | None = None,
    http: httpx2.AsyncClient | None = None,
    elicitation: ElicitationFnT | None = None,
) -> AsyncIterator[Client]:
    """An SDK client of the Streamable HTTP server at `url`."""
    transport = streamable_http_client(f"{url}/mcp", http_client=http or httpx2.AsyncClient(timeout=30))
    async with Client(
        transport, mode=mode, message_handler=message_handler, elicitation_callback=elicitation
    ) as client:
        yield client


@asynccontextmanager
async def serve(
    transport: str,
    emulator: Emulator,
    clock: FakeClock,
    *flags: str,
    mode: str,
    message_handler: MessageHandlerFnT | None = None,
    elicitation: ElicitationFnT | None = None,
) -> AsyncIterator[Client]:
    """A client of a fresh server run with `flags` against the emulator, over `transport` (one of TRANSPORTS);
    `elicitation` is the user who answers its questions (none: the client cannot ask).

    The stdio subprocess keeps time by the wall clock; the others by `clock`.
    """
    callbacks: dict[str, Any] = {"message_handler": message_handler, "elicitation_callback": elicitation}
    if transport == "stdio":
        async with Client(params(*flags, env=emulator.environment()), mode=mode, **callbacks) as client:
            yield client
    elif transport == "http":
        app = build_http_app(settings(emulator, *flags, transport="streamable-http"), clock=clock)
        with LoopbackServer(app, lifespan="on") as server:
            async with http_client(server.url, mode, message_handler, elicitation=elicitation) as client:
                yield client
    else:
        assert transport == "memory", transport
        async with Client(create_app(settings(emulator, *flags), clock=clock), mode=mode, **callbacks) as client:
            yield client
