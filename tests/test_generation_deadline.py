"""A generation that stalls behind keep-alive comments ends, and gives back its slot and its stream."""

from __future__ import annotations

import anyio
import pytest
from mcp.types import CallToolResult

from server.clock import FakeClock
from server.sandbox import EmulatorState
from server.sandbox.records import Fault
from tests.conftest import Connect
from tests.results import data, error

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Write a long story."}


@pytest.mark.parametrize(
    ("env", "advance_s", "says"),
    [
        ({}, 61, "no text arrived for 60 s"),  # the idle timeout (FLASHSNAP_TIMEOUT_S) counts text only
        ({"FLASHSNAP_MAX_GENERATION_S": "30"}, 31, "ran longer than 30 s"),  # the total cap
    ],
)
async def test_a_stream_of_keep_alives_ends_and_releases_its_slot(
    connect: Connect, state: EmulatorState, clock: FakeClock, env: dict[str, str], advance_s: float, says: str
) -> None:
    state.inject("chat", Fault(stall_after_chunks=1))
    results: list[CallToolResult] = []
    async with connect(env={**env, "FLASHSNAP_MAX_CONCURRENT_GENERATIONS": "1"}) as client:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    results.append(await client.call_tool("generate", GENERATE))

                tg.start_soon(call)
                # Once the upstream has gone quiet but for its pings, the time passes.
                assert await anyio.to_thread.run_sync(state.wait_until, lambda: state.pings_sent >= 2)
                clock.advance(advance_s)
            err = error(results[0])
            assert err["code"] == "incomplete_stream"
            assert says in err["message"]
            assert err["maybe_processed"] is True
            assert err["partial_text"]
            # The upstream stream was closed, and the only slot is free again.
            assert await anyio.to_thread.run_sync(state.wait_until, lambda: state.active_streams == 0)
            assert state.streams_closed_early == 1
            data(await client.call_tool("generate", GENERATE))
