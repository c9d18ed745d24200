"""generate end to end: progress while streaming, cut and failed streams, cancellation."""

from __future__ import annotations

import anyio
from mcp import Client

from server.sandbox import EmulatorState
from server.sandbox.records import Fault
from tests.results import data, error

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Write three sentences about tea."}


async def test_progress_arrives_in_increasing_order_while_text_streams(client: Client) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = data(await client.call_tool("generate", GENERATE, progress_callback=on_progress))
    assert len(seen) >= 3
    values = [p for p, _, _ in seen]
    assert values == sorted(values)
    assert len(set(values)) == len(values)  # strictly increasing
    assert values[-1] == len(result["text"])
    assert seen[-1][2] == f"{result['words_used']} words so far"


async def test_a_stream_cut_before_done_is_an_error_and_is_not_repeated(client: Client, state: EmulatorState) -> None:
    state.inject("chat", Fault(cut_after_chunks=2))
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "incomplete_stream"
    assert "[DONE]" in err["message"]
    assert err["maybe_processed"] is True
    assert err["partial_text"]  # what did arrive is not lost
    assert err["request_id"]
    assert state.count("chat") == 1


async def test_a_502_on_generate_is_not_repeated(client: Client, state: EmulatorState) -> None:
    state.inject("chat", Fault(status=502))
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "upstream_unavailable"
    assert err["maybe_processed"] is True
    assert "not repeated" in err["hint"]
    assert state.count("chat") == 1
    assert state.words_charged == 0


async def test_a_cancelled_generate_closes_the_upstream_stream(client: Client, state: EmulatorState) -> None:
    state.latency_s["chat_chunk"] = 0.05
    first_progress = anyio.Event()
    tasks_before = len(anyio.get_running_tasks())

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool("generate", GENERATE, progress_callback=on_progress)

            tg.start_soon(call)
            await first_progress.wait()
            tg.cancel_scope.cancel()
        closed = await anyio.to_thread.run_sync(state.wait_until, lambda: state.streams_closed_early == 1)
    assert closed
    # The call's shielded clean-up (its generation slot, its rate-limit settlement) finishes, then no task is left.
    with anyio.fail_after(5):
        while len(anyio.get_running_tasks()) > tasks_before:  # noqa: ASYNC110 - the server's tasks offer no event
            await anyio.sleep(0.01)
    assert state.streams_completed == 0
    assert state.words_charged == 0
    state.latency_s.clear()
    assert data(await client.call_tool("generate", GENERATE))["text"]  # and the server still serves
