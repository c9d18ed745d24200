"""Shutdown over HTTP keeps stdio's promise: a call received before SIGTERM or SIGINT finishes and is answered.

Issue 31, row 1: SIGTERM while a `generate` streamed over HTTP, with FLASHSNAP_SHUTDOWN_GRACE_S=15, cut the call
after about a second with no answer at all (sse-starlette ends every event stream as soon as uvicorn begins to
stop). Every shutdown signal, on both HTTP transports, each a real `flashsnap-mcp` subprocess; the emulator paces
the generation (tests/test_shutdown.py holds the same table for stdio).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from anyio.abc import Process
from mcp import Client
from mcp.client.sse import sse_client
from mcp.types import CallToolResult

from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import Fault
from tests.servers import free_port
from tests.test_http_process import wait_for_line
from tests.test_stdio import COMMAND, params

TRANSPORTS = ["streamable-http", "sse"]
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]
GENERATE = {"model": "gpt-4.1-mini", "prompt": "Write a tagline for a tea shop.", "max_tokens": 30}
CHUNK_S = 0.3  # the emulator's pace: 10 chunks, about 3 s, several times the ~0.5 s in which streams were cut


@asynccontextmanager
async def server(emulator: Emulator, transport: str, grace_s: float) -> AsyncIterator[tuple[Process, Client]]:
    """A `flashsnap-mcp` HTTP subprocess and an SDK client of it (tools listed first, as clients do on connecting);
    on the way out, the check that the server stopped cleanly."""
    port = free_port()
    command = [COMMAND, "--transport", transport, "--port", str(port)]
    env = {**(params().env or {}), **emulator.environment(), "FLASHSNAP_SHUTDOWN_GRACE_S": str(grace_s)}
    seen: list[str] = []
    async with await anyio.open_process(command, env=env) as process:
        await wait_for_line(process, f"serving {transport}", seen)
        url = f"http://127.0.0.1:{port}"
        transport_client = sse_client(f"{url}/sse") if transport == "sse" else f"{url}/mcp"
        try:
            async with Client(transport_client, mode="legacy") as client:
                await client.list_tools()
                yield process, client
        except* (httpx2.TransportError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # once it has answered, the server goes away under the client's open streams, as it should
        await exited(process, seen)


async def call_then_signal(
    client: Client, process: Process, started: Callable[[], bool], signum: signal.Signals
) -> CallToolResult:
    """Start a `generate`, send `signum` once `started()` holds, and return the call's result."""
    outcome: list[CallToolResult] = []

    async def generate() -> None:
        async def progress(progress: float, total: float | None, message: str | None) -> None:
            pass  # a client that shows progress: the call's answer stream carries notices as the text arrives

        outcome.append(await client.call_tool("generate", GENERATE, progress_callback=progress))

    async with anyio.create_task_group() as tg:
        tg.start_soon(generate)
        await anyio.to_thread.run_sync(started)
        process.send_signal(signum)
    return outcome[0]


def streaming(state: EmulatorState) -> bool:
    """Whether the generation's text has begun to arrive (waited for, up to 30 s)."""
    return state.wait_until(lambda: len(state.chunk_times) >= 1, 30)


def stalled(state: EmulatorState) -> bool:
    """Whether the generation has stalled, its stream only keeping the connection alive (waited for)."""
    return state.wait_until(lambda: state.pings_sent >= 1, 30)


async def exited(process: Process, seen: list[str]) -> None:
    await wait_for_line(process, "upstream clients closed", seen)
    # uvicorn re-raises the signal once shut down: "ended by SIGTERM" is a clean stop to service managers.
    assert await process.wait() in (0, -signal.SIGTERM)


@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_signal_mid_generate_lets_it_finish_within_the_grace_and_answers_it(
    emulator: Emulator, state: EmulatorState, transport: str, signum: signal.Signals
) -> None:
    state.latency_s["chat_chunk"] = CHUNK_S
    with anyio.fail_after(90):
        async with server(emulator, transport, grace_s=15) as (process, client):
            result = await call_then_signal(client, process, lambda: streaming(state), signum)
            assert not result.is_error, result
            assert result.structured_content is not None
            assert result.structured_content["words_used"] > 0
    assert state.streams_completed == 1  # the whole text, not a cut one
    assert state.streams_closed_early == 0
    assert state.count("chat") == 1


@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_call_the_grace_cuts_off_is_answered_with_maybe_processed_and_the_request_id(
    emulator: Emulator, state: EmulatorState, transport: str, signum: signal.Signals
) -> None:
    state.inject("chat", Fault(stall_after_chunks=1, ping_every_s=0.2))  # a generation that never ends
    with anyio.fail_after(90):
        async with server(emulator, transport, grace_s=1) as (process, client):
            result = await call_then_signal(client, process, lambda: stalled(state), signum)
            assert result.is_error
            assert result.meta is not None
            err = result.meta["io.flashsnap/error"]
            assert err["code"] == "shutdown"
            assert err["maybe_processed"] is True
            assert err["request_id"]  # neuroflash's x-request-id of the cut generation
            assert "FLASHSNAP_SHUTDOWN_GRACE_S" in err["message"]
    assert state.count("chat") == 1


@pytest.mark.parametrize("signum", SIGNALS)
async def test_an_open_listen_stream_does_not_hold_the_exit(emulator: Emulator, signum: signal.Signals) -> None:
    """A 2026-07-28 client's `subscriptions/listen` POST stays open for as long as it listens: it is no call in
    flight for the drain to wait for (it held the exit for the whole grace), and the shutdown ends it gracefully,
    with its result (uvicorn waited 5 s for it, then cancelled it with a traceback)."""
    port = free_port()
    command = [COMMAND, "--transport", "streamable-http", "--port", str(port), "--toolsets", "all"]
    env = {**(params().env or {}), **emulator.environment(), "FLASHSNAP_SHUTDOWN_GRACE_S": "3600"}
    seen: list[str] = []
    with anyio.fail_after(60):
        async with await anyio.open_process(command, env=env) as process:
            await wait_for_line(process, "serving streamable-http", seen)
            try:
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    async with client.listen(resources_list_changed=True) as listening:
                        process.send_signal(signum)
                        async for _ in listening:  # a graceful close ends the loop; a cut raises SubscriptionLost
                            pass
                    await exited(process, seen)
            except* (httpx2.TransportError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the server went away under the client, as it should
            assert process.returncode in (0, -signal.SIGTERM)
    assert not any("graceful shutdown exceeded" in line for line in seen)
