"""The fault matrix: every tool against every way an upstream misbehaves.

Each call ends in a success or a clear isError result, the server goes on serving, and no task
outlives the call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio
import pytest
from mcp import Client

from server.sandbox import EmulatorState
from server.sandbox.records import Fault
from tests.conftest import Connect
from tests.results import data, error, text

# tool -> (the emulator route its call ends on, arguments, whether the call spends or creates)
TOOLS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "list_workspaces": ("workspaces", {}, False),
    "check_quota": ("quotas", {}, False),
    "list_models": ("models", {}, False),
    "generate": ("chat", {"model": "gpt-4.1-mini", "prompt": "Hi"}, True),
    "snapshot": ("snapshot_create", {"name": "n", "core": "c"}, True),
    "search_snapshots": ("snapshot_search", {"query": "n"}, False),
    "get_snapshot": ("snapshot_get", {"id": "KNOWN"}, False),
}

FAULTS: dict[str, Fault] = {
    "500": Fault(status=500),
    "502": Fault(status=502),
    "503": Fault(status=503),
    "connection reset mid-body": Fault(body="reset"),
    "malformed JSON": Fault(body="malformed"),
    "wrong content type": Fault(body="wrong_type"),
    "oversized body": Fault(body="oversized"),
    "Retry-After in the past": Fault(status=429, retry_after_s=-30),
    "Retry-After absurdly far": Fault(status=429, retry_after_s=10**9),
}

# Codes a failed call may end with: each one an answer a model can act on.
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"  # well-formed, so the request goes out

CLEAR_CODES = {"upstream_unavailable", "incomplete_stream", "rate_limited"}


async def call_and_check(client: Client, state: EmulatorState, tool: str, *, retried_safely: bool) -> None:
    route, args, spends = TOOLS[tool]
    if tool == "get_snapshot":
        args = {"id": data(await client.call_tool("snapshot", {"name": "k", "core": "k"}))["id"]}
    tasks_before = len(anyio.get_running_tasks())
    before = state.count(route)
    with anyio.fail_after(30):
        result = await client.call_tool(tool, args)
    if result.is_error:
        err = error(result)
        assert err["code"] in CLEAR_CODES, text(result)
        assert err["hint"]
    if spends and not retried_safely:
        assert state.count(route) - before == 1  # never repeated: it may have spent words or saved data
    assert len(anyio.get_running_tasks()) == tasks_before
    # ... and the server goes on serving.
    data(await client.call_tool("list_workspaces", {}))


@pytest.mark.parametrize("fault_name", list(FAULTS))
@pytest.mark.parametrize("tool", list(TOOLS))
async def test_every_tool_survives_every_upstream_fault(
    connect: Connect, state: EmulatorState, tool: str, fault_name: str
) -> None:
    # One protocol mode is enough here: upstream faults do not depend on it.
    async with connect() as client:
        data(await client.call_tool("list_workspaces", {}))  # the token is fetched before the fault
        state.inject(TOOLS[tool][0], replace(FAULTS[fault_name]))
        # A 429 proves nothing was processed, so even a write is sent again; nothing else is.
        await call_and_check(client, state, tool, retried_safely=FAULTS[fault_name].status == 429)


@pytest.mark.parametrize("tool", list(TOOLS))
async def test_latency_beyond_the_timeout_is_retried_for_reads_and_reported_for_writes(
    connect: Connect, state: EmulatorState, tool: str
) -> None:
    route, _, spends = TOOLS[tool]
    async with connect(env={"FLASHSNAP_TIMEOUT_S": "0.3"}) as client:
        data(await client.call_tool("list_workspaces", {}))
        state.latency_s[route] = 0.6  # every request to the route outlasts the timeout, twice over
        before = state.count(route)
        with anyio.fail_after(30):
            result = await client.call_tool(tool, TOOLS[tool][1] if tool != "get_snapshot" else {"id": UNKNOWN_ID})
        state.latency_s.clear()
        assert result.is_error  # every attempt outlasts the timeout
        err = error(result)
        assert err["code"] == "upstream_unavailable"
        assert "timed out" in err["message"]
        assert err["maybe_processed"] is spends
        assert state.count(route) - before == (1 if spends else 4)  # reads: 4 attempts; writes: never repeated
        data(await client.call_tool("list_workspaces", {}))


async def test_a_token_that_expires_mid_stream_does_not_break_the_stream(client: Client, state: EmulatorState) -> None:
    state.latency_s["chat_chunk"] = 0.02
    expired = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if not expired.is_set():
            state.expire_tokens()
            expired.set()

    result = data(await client.call_tool("generate", TOOLS["generate"][1], progress_callback=on_progress))
    assert result["text"]
    assert expired.is_set()
    data(await client.call_tool("list_workspaces", {}))  # the next call refreshes and replays once
    assert state.count("token") == 2
