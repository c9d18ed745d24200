"""The token manager through real tool calls: one token for many calls, refresh and replay on 401."""

from __future__ import annotations

import anyio
from mcp import Client

from server.clock import FakeClock
from server.sandbox import EmulatorState
from server.sandbox.records import Fault
from tests.conftest import Connect
from tests.results import data, error


async def call_many(client: Client, n: int, tool: str = "list_workspaces") -> None:
    async def one() -> None:
        data(await client.call_tool(tool, {}))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)


async def test_twenty_concurrent_calls_fetch_exactly_one_token(client: Client, state: EmulatorState) -> None:
    await call_many(client, 20)
    assert state.count("token") == 1
    assert state.count("workspaces") == 20


async def test_a_hundred_concurrent_calls_fetch_exactly_one_token(client: Client, state: EmulatorState) -> None:
    await call_many(client, 100, "check_quota")
    assert state.count("token") == 1


async def test_a_revoked_token_is_refreshed_once_and_the_call_replayed_once(
    client: Client, state: EmulatorState
) -> None:
    await call_many(client, 1)
    state.revoke_tokens()
    await call_many(client, 1)
    assert state.count("token") == 2
    assert state.count("workspaces") == 3  # the first call, the refused one, the replay
    assert state.count_status("workspaces", 401) == 1


async def test_a_token_revoked_under_concurrent_calls_is_refreshed_once(client: Client, state: EmulatorState) -> None:
    await call_many(client, 1)
    state.revoke_tokens()
    await call_many(client, 20)
    assert state.count("token") == 2
    assert state.count_status("workspaces", 200) == 21


async def test_a_token_is_renewed_before_it_expires_not_after(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    await call_many(client, 1)
    clock.advance(state.token_ttl_s - 10)  # inside the mandatory window: calls wait for a new token
    await call_many(client, 5)
    assert state.count("token") == 2
    assert state.count_status("workspaces", 401) == 0


async def test_in_the_advisory_window_the_current_token_serves_while_one_refresh_runs(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    await call_many(client, 1)
    start = clock.now()
    clock.advance(state.token_ttl_s - 100)  # advisory window: 120 s before expiry
    state.inject("token", Fault(status=503, times=3))  # the background refresh fails: nobody notices
    await call_many(client, 10)
    assert await anyio.to_thread.run_sync(state.wait_for, "token", 4)
    assert state.count_status("workspaces", 200) == 11
    # Once the failure is older than FAILURE_MEMORY_S, a call in the window starts the refresh again.
    with anyio.fail_after(10):
        while state.count("token") < 5:
            clock.advance(1)
            await call_many(client, 1)
    assert clock.now() - start < state.token_ttl_s - 30  # all of it before the mandatory window
    await call_many(client, 10)
    assert state.count("token") == 5
    assert state.count_status("workspaces", 401) == 0


async def test_a_token_expiring_upstream_mid_run_costs_exactly_one_more_token_request(
    client: Client, state: EmulatorState
) -> None:
    await call_many(client, 10)
    state.expire_tokens()  # the upstream's clock disagrees with ours: 401s, then one refresh
    await call_many(client, 10)
    assert state.count("token") == 2


async def test_the_token_endpoint_failing_briefly_is_retried_with_backoff(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.inject("token", Fault(status=503, times=2))
    await call_many(client, 1)
    assert state.count("token") == 3
    assert len(clock.sleeps) == 2


async def test_the_token_endpoint_down_for_good_is_a_clear_error(connect: Connect, state: EmulatorState) -> None:
    state.inject("token", Fault(status=502, times=10))
    async with connect() as client:
        err = error(await client.call_tool("list_workspaces", {}))
    assert err["code"] == "upstream_unavailable"
    assert "token endpoint" in err["message"]
    assert state.count("token") == 3
    assert state.count("workspaces") == 0


async def test_callers_queued_behind_a_failed_token_request_share_its_failure(
    client: Client, state: EmulatorState
) -> None:
    state.inject("token", Fault(status=502, times=100))
    results = []

    async def one() -> None:
        results.append(await client.call_tool("list_workspaces", {}))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert all(r.is_error for r in results)
    assert state.count("token") == 3  # one request with its retries, not one per caller
