"""Bounded everywhere: what an upstream sends is read up to a cap, and every text an error result carries is cut
with a note, however much arrived (a 600 MB token answer, a generation that runs away and then fails)."""

from __future__ import annotations

import anyio
import pytest

from server.clock import FakeClock
from server.credentials.tokens import MAX_TOKEN_ANSWER_BYTES
from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import Fault
from server.tooling.answers import MAX_DETAIL_CHARS
from tests.conftest import Connect
from tests.results import error
from tests.transports import serve

MiB = 1024 * 1024
FLOOD = 200 * MiB  # what the answer would have been: the cap makes the difference obvious
# Loopback socket buffers take some MiB before the server feels the client stopped reading.
BUFFERS = 16 * MiB


async def test_a_flood_from_the_token_endpoint_is_read_up_to_the_cap(connect: Connect, state: EmulatorState) -> None:
    state.inject("token", Fault(flood_bytes=FLOOD, times=3))  # every attempt of one fetch
    with anyio.fail_after(60):
        async with connect() as client:
            err = error(await client.call_tool("list_workspaces", {}))
    assert err["code"] == "upstream_unavailable"
    assert "64 KiB" in err["message"]
    attempts = state.count("token")
    assert 1 <= attempts <= 3
    assert state.sent_bytes["token"] <= attempts * (MAX_TOKEN_ANSWER_BYTES + BUFFERS)
    assert state.count("workspaces") == 0  # no token: nothing else was sent


RUNAWAY = 2_000_000  # characters of text before the failure (16.7 million were seen)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault(runaway_chars=RUNAWAY), "upstream_stream_error"),  # an error event after it all
        (Fault(runaway_chars=RUNAWAY, cut_after_chunks=0), "incomplete_stream"),  # the connection ends instead
    ],
    ids=["error event", "cut off"],
)
async def test_a_runaway_generation_that_fails_gives_a_bounded_error_with_its_text_cut(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, fault: Fault, code: str
) -> None:
    state.inject("chat", fault)
    with anyio.fail_after(60):
        async with serve("http", emulator, clock, mode="auto") as client:
            result = await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 50})
    err = error(result)
    assert err["code"] == code
    partial = err["partial_text"]
    assert isinstance(partial, str)
    assert partial.startswith("runaway runaway")  # the text as it began
    assert len(partial) <= MAX_DETAIL_CHARS
    assert "more characters not shown" in partial[-80:]  # the cut says so
    assert f"{RUNAWAY - MAX_DETAIL_CHARS:,}" in partial[-80:]
    assert len(result.model_dump_json(by_alias=True)) < 4 * MAX_DETAIL_CHARS  # the whole result, as sent
    assert err["maybe_processed"] is True
    assert state.count("chat") == 1  # never repeated
