"""Hostile tests of change notices (issue 20): clients that misbehave, Redis that misbehaves, shutdown in flight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import InitializedNotification

from server.clock import FakeClock
from server.sandbox import Emulator
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.results import data
from tests.test_notifications import THOUGHT, Heard, StandaloneStream, http_session
from tests.transports import settings


@asynccontextmanager
async def http_server(emulator: Emulator, clock: FakeClock, **overrides: Any) -> AsyncIterator[str]:
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", **overrides)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as server:
        yield server.url


async def test_a_session_that_repeats_initialized_hears_each_change_once(emulator: Emulator, clock: FakeClock) -> None:
    heard, stream = Heard(), StandaloneStream()
    with anyio.fail_after(10):
        async with (
            http_server(emulator, clock) as url,
            http_session(url, "legacy", heard, stream) as repeater,
            http_session(url, "legacy") as writer,
        ):
            await stream.wait()
            for _ in range(3):  # a buggy or hostile client re-sends the handshake's last step
                await repeater.session.send_notification(InitializedNotification())
            await repeater.list_prompts()  # the notifications were handled before this answer
            data(await writer.call_tool("snapshot", THOUGHT))
            await heard.until(1)
            data(await writer.call_tool("snapshot", {**THOUGHT, "name": "Second"}))
            await heard.until(2)
            await repeater.list_prompts()
            assert heard.count == 2  # one notice per change, not one per `initialized` the client sent


async def test_one_session_cannot_push_the_others_out_of_the_notice_registry(
    emulator: Emulator, clock: FakeClock
) -> None:
    victim, stream = Heard(), StandaloneStream()
    with anyio.fail_after(10):
        async with (
            http_server(emulator, clock, max_sessions=3) as url,
            http_session(url, "legacy", victim, stream) as listener,
            http_session(url, "legacy") as hostile,
            http_session(url, "legacy") as writer,
        ):
            await stream.wait()
            for _ in range(3):  # as many as the registry holds: each one pushed the oldest out
                await hostile.session.send_notification(InitializedNotification())
            await hostile.list_prompts()
            data(await writer.call_tool("snapshot", THOUGHT))
            # A live session of three, within max_sessions: it must still be told.
            with anyio.move_on_after(1):
                await victim.until(1)
            await listener.list_prompts()
            assert victim.count == 1
