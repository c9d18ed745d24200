"""Rate-limit-aware scheduling through real tool calls, on the emulator's counters and a fake clock."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import anyio
from mcp import Client

from server.clock import FakeClock
from server.sandbox import EmulatorState
from server.sandbox.records import Fault
from tests.results import data, error

WINDOW = 60.0


def sends(state: EmulatorState, route: str) -> list[float]:
    """When each request to `route` reached the emulator, in fake-clock seconds."""
    with state.lock:
        return [r.at for r in state.log if r.route == route]


async def snapshot_many(client: Client, n: int, **extra: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        results.append(data(await client.call_tool("snapshot", {"name": f"s{i}", "core": "c", **extra})))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return results


async def test_twelve_calls_under_a_limit_of_five_all_succeed_in_three_windows_without_a_429(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.set_rate_limit(5, WINDOW)
    created = await snapshot_many(client, 12, max_wait_s=300)
    assert len({s["id"] for s in created}) == 12
    assert len(state.snapshots) == 12
    assert state.count_status("snapshot_create", 429) == 0
    windows = Counter(math.floor(t / WINDOW) for t in sends(state, "snapshot_create"))
    assert sorted(windows.values(), reverse=True) == [5, 5, 2]  # three windows, each budget used in full
    assert max(windows) - min(windows) == 2


async def test_nothing_is_sent_while_the_budget_is_spent_before_the_reset(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.set_rate_limit(2, WINDOW)
    await snapshot_many(client, 2)
    reset = state.windows[next(iter(state.windows))].reset_at
    data(await client.call_tool("search_snapshots", {"query": "s1", "max_wait_s": 120}))
    assert sends(state, "snapshot_search")[0] >= reset
    assert state.count_status("snapshot_search", 429) == 0


async def test_a_429_with_retry_after_holds_the_next_request_that_long(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.inject("snapshot_search", Fault(status=429, retry_after_s=7))
    data(await client.call_tool("search_snapshots", {"query": "x"}))
    first, second = sends(state, "snapshot_search")
    assert second - first == 7


async def test_the_wait_named_only_in_the_body_is_honoured(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.inject("snapshot_search", Fault(status=429, retry_after_s=9, retry_after_header=False))
    data(await client.call_tool("search_snapshots", {"query": "x"}))
    first, second = sends(state, "snapshot_search")
    assert second - first == 9


async def test_a_429_also_holds_the_calls_queued_behind_it(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.inject("snapshot_create", Fault(status=429, retry_after_s=20))
    await snapshot_many(client, 4)  # the first probes the limit and meets the 429; the others queue behind
    times = sends(state, "snapshot_create")
    assert len(times) == 5
    assert state.count_status("snapshot_create", 429) == 1
    assert all(t - times[0] >= 20 for t in times[1:])


async def test_a_wait_beyond_the_budget_fails_at_once_with_a_structured_error(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.set_rate_limit(1, 3600)
    data(await client.call_tool("search_snapshots", {"query": "x"}))
    before = clock.now()
    result = await client.call_tool("snapshot", {"name": "n", "core": "c"})
    err = error(result)
    assert err["reason"] == "rate_limited"
    assert err["scope"] == "neuralsnap"
    reset = next(iter(state.windows.values())).reset_at
    assert err["retry_after_s"] == reset - before
    assert clock.now() == before  # it did not wait
    assert state.count("snapshot_create") == 0  # nor send a request bound to fail


async def test_a_wait_within_the_budget_sends_heartbeats_then_succeeds(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.set_rate_limit(1, 12)
    clock.advance(12 - clock.now() % 12)  # at the start of a window: the next one is 12 s away
    data(await client.call_tool("search_snapshots", {"query": "x"}))
    beats: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        beats.append((progress, message))

    result = await client.call_tool("search_snapshots", {"query": "x"}, progress_callback=on_progress)
    data(result)
    assert len(beats) >= 3  # at 12, 7 and 2 seconds left
    assert [p for p, _ in beats] == sorted(p for p, _ in beats)
    assert all("waiting" in (m or "") for _, m in beats)
    assert state.count_status("snapshot_search", 429) == 0


async def test_a_failed_snapshot_creation_is_never_repeated(client: Client, state: EmulatorState) -> None:
    state.inject("snapshot_create", Fault(status=502))
    err = error(await client.call_tool("snapshot", {"name": "n", "core": "c"}))
    assert err["maybe_processed"] is True
    assert state.count("snapshot_create") == 1


async def test_check_quota_shows_the_schedulers_view(client: Client, state: EmulatorState, clock: FakeClock) -> None:
    state.set_rate_limit(10, WINDOW)
    await snapshot_many(client, 3)
    report = data(await client.call_tool("check_quota", {}))
    view = next(r for r in report["rate_limits"] if r["scope"] == "neuralsnap")
    assert view["limit"] == 10
    assert view["remaining"] == 7
    assert view["resets_at"] is not None
    assert view["queued"] == 0
    assert view["estimated_wait_s"] == 0


async def test_generations_beyond_the_concurrency_limit_wait_their_turn(connect: Any, state: EmulatorState) -> None:
    state.latency_s["chat_chunk"] = 0.01
    async with connect(env={"FLASHSNAP_MAX_CONCURRENT_GENERATIONS": "2"}) as client:
        results: list[dict[str, Any]] = []

        async def one() -> None:
            results.append(data(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "x"})))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(one)
    assert len(results) == 5
    assert state.count("chat") == 5
    assert state.max_concurrent_streams == 2


async def test_a_cancelled_call_leaves_the_queue_and_sends_nothing(client: Client, state: EmulatorState) -> None:
    state.latency_s["snapshot_search"] = 1.0  # the probe is slow, so the next call must wait at the gate

    async def neuralsnap_queue() -> int:
        report = data(await client.call_tool("check_quota", {}))
        return int(next(r for r in report["rate_limits"] if r["scope"] == "neuralsnap")["queued"])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as probe:
            probe.start_soon(client.call_tool, "search_snapshots", {"query": "x"})
            async with anyio.create_task_group() as waiting:
                waiting.start_soon(client.call_tool, "snapshot", {"name": "n", "core": "c"})
                while await neuralsnap_queue() < 1:
                    pass
                waiting.cancel_scope.cancel()
            assert await neuralsnap_queue() == 0
    assert state.count("snapshot_search") == 1
    assert state.count("snapshot_create") == 0


async def test_a_request_cancelled_in_flight_does_not_stall_the_queue(client: Client, state: EmulatorState) -> None:
    state.latency_s["snapshot_search"] = 1.0
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "search_snapshots", {"query": "x"})
            assert await anyio.to_thread.run_sync(state.wait_for, "snapshot_search", 1)  # it is out, unanswered
            tg.cancel_scope.cancel()
        state.latency_s.clear()
        # The probe never answered; had it stayed "in flight", this call would wait for it forever.
        data(await client.call_tool("search_snapshots", {"query": "x", "max_wait_s": 1}))
