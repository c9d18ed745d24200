"""Choosing tools: --tools, --exclude-tools, --read-only, and the HTTP headers that may only narrow the set."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import tools
from server.app import create_app
from server.clock import FakeClock
from server.config import Settings
from server.errors import ConfigurationError
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.tooling.spec import DEFAULT_TOOLSETS
from server.transports.http import build_http_app
from tests.conftest import MODES, Connect
from tests.results import data, error
from tests.test_stdio import COMMAND, params

# From the one list of tools (tools.ALL), each as it declares itself.
EVERY = {spec.name for spec in tools.ALL}
ALL = {spec.name for spec in tools.ALL if spec.toolset in DEFAULT_TOOLSETS}  # the default toolsets
EVERY_WRITER = {spec.name for spec in tools.ALL if not spec.read_only}
WRITERS = ALL & EVERY_WRITER
DEFAULT_BUDGET, ALL_BUDGET = 12_000, 24_000
README = Path(__file__).parent.parent / "README.md"


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_lists_only_tools_that_change_nothing_and_refuses_the_others(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_READ_ONLY": "1"}) as client:
        assert {t.name for t in (await client.list_tools()).tools} == ALL - WRITERS
        refused = error(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "hi"}))
        assert refused["code"] == "tool_disabled"
        assert "read-only" in refused["message"]
        assert "restart" in refused["hint"]
        # Refused before its arguments are even read: a broken call says the same, not "invalid arguments".
        assert error(await client.call_tool("snapshot", {}))["code"] == "tool_disabled"
        data(await client.call_tool("list_workspaces", {}))
    assert state.count("chat") == 0


async def test_read_only_leaves_out_every_tool_that_creates_changes_spends_or_deletes(
    connect: Connect, state: EmulatorState
) -> None:
    async with connect(env={"FLASHSNAP_READ_ONLY": "1", "FLASHSNAP_TOOLSETS": "all"}) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == EVERY - EVERY_WRITER
        assert all(t.annotations and t.annotations.read_only_hint for t in listed.values())
        for name in sorted(listed):
            args = {"list_snapshots": {}, "search_snapshots": {"query": "x"}, "list_twins": {},
                    "list_brand_voices": {}, "list_workspaces": {}, "check_quota": {}, "list_models": {}}  # fmt: skip
            if name in args:
                data(await client.call_tool(name, args[name]))
        assert error(await client.call_tool("delete_snapshot", {}))["code"] == "tool_disabled"
    # Read-only tools caused no write upstream.
    writes = ("chat", "snapshot_create", "snapshot_update", "snapshot_delete", "crystallize", "twin_group_chat")
    assert all(state.count(route) == 0 for route in writes)
    assert not state.received  # the emulator records the body of every write it took: none


async def test_toolsets_choose_groups_of_tools_and_tools_add_to_them(connect: Connect) -> None:
    async with connect(env={"FLASHSNAP_TOOLSETS": "twins,neuralsnap-write"}) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {
            "list_twins", "ask_twins", "list_snapshots", "crystallize", "update_snapshot", "delete_snapshot"
        }  # fmt: skip
        off = error(await client.call_tool("generate", {"model": "m", "prompt": "p"}))
        assert "neuroflash" in off["message"]
        assert "FLASHSNAP_TOOLSETS" in off["hint"]
    async with connect(env={"FLASHSNAP_TOOLSETS": "default", "FLASHSNAP_TOOLS": "crystallize"}) as client:
        assert {t.name for t in (await client.list_tools()).tools} == ALL | {"crystallize"}
    with pytest.raises(ConfigurationError, match="unknown toolset brnad"):
        create_app(Settings(toolsets=("brnad",)))


async def test_tools_and_exclude_tools_choose_by_name_and_say_how_to_turn_a_tool_on(connect: Connect) -> None:
    env = {"FLASHSNAP_TOOLS": "list_workspaces, check_quota,generate", "FLASHSNAP_EXCLUDE_TOOLS": "generate"}
    async with connect(env=env) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"list_workspaces", "check_quota"}
        not_chosen = error(await client.call_tool("search_snapshots", {"query": "x"}))
        assert "FLASHSNAP_TOOLS" in not_chosen["message"]
        assert not_chosen["tool"] == "search_snapshots"
        excluded = error(await client.call_tool("generate", {"model": "m", "prompt": "p"}))
        assert "FLASHSNAP_EXCLUDE_TOOLS" in excluded["message"]
        # A name the server never had is still the SDK's plain "unknown tool".
        assert (await client.call_tool("no_such_tool", {})).is_error


def test_unknown_tool_names_stop_the_start_with_the_valid_names() -> None:
    with pytest.raises(ConfigurationError) as caught:
        create_app(Settings(tools=("list_workspaces", "generat")))
    assert "generat" in str(caught.value)
    assert all(name in str(caught.value) for name in ALL)
    with pytest.raises(ConfigurationError, match="no tool left"):
        create_app(Settings(tools=("generate",), read_only=True))


def test_the_command_refuses_an_unknown_tool_name_before_serving() -> None:
    done = subprocess.run(
        [COMMAND, "--sandbox", "--exclude-tools", "snapshots"],
        env=params().env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "unknown tool name snapshots" in done.stderr
    assert "search_snapshots" in done.stderr
    assert done.stdout == ""


@asynccontextmanager
async def http_client(url: str, headers: dict[str, str], mode: str = "auto") -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client:
        yield client


@pytest.mark.parametrize("mode", MODES)
async def test_http_headers_narrow_the_operators_set_and_never_widen_it(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, mode: str
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", exclude_tools=("snapshot",))
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with http_client(server.url, {}, mode) as plain:
            assert {t.name for t in (await plain.list_tools()).tools} == ALL - {"snapshot"}
        asked = {"X-MCP-Tools": "generate, snapshot,list_models"}
        async with http_client(server.url, asked, mode) as narrowed:
            # snapshot stays off: a header cannot turn on what the operator turned off.
            assert {t.name for t in (await narrowed.list_tools()).tools} == {"generate", "list_models"}
            left_out = error(await narrowed.call_tool("check_quota", {}))
            assert left_out["code"] == "tool_disabled"
            assert "X-MCP-Tools" in left_out["message"]
            assert "FLASHSNAP_EXCLUDE_TOOLS" in error(await narrowed.call_tool("snapshot", {}))["message"]
            data(await narrowed.call_tool("list_models", {}))
        async with http_client(server.url, {"X-MCP-Readonly": "true"}, mode) as reader:
            assert {t.name for t in (await reader.list_tools()).tools} == ALL - WRITERS
            refused = error(await reader.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "hi"}))
            assert "X-MCP-Readonly" in refused["message"]
        async with http_client(server.url, {"X-MCP-Toolsets": "brand, twins"}, mode) as branded:
            # twins is not on at all (not in the default toolsets): the header cannot widen to it.
            assert {t.name for t in (await branded.list_tools()).tools} == {"list_brand_voices"}
            assert "X-MCP-Toolsets" in error(await branded.call_tool("list_models", {}))["message"]
    assert state.count("chat") == 0


async def test_the_tool_list_carries_a_cache_hint_on_the_modern_protocol(connect: Connect) -> None:
    async with connect(mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        listed = await client.list_tools()
        assert listed.ttl_ms == 600_000
        assert listed.cache_scope == "private"
        # Tool results change from call to call: they carry no freshness hint.
        result = await client.call_tool("check_quota", {})
        assert "ttlMs" not in result.model_dump(by_alias=True, exclude_none=True)


def tools_list_size(**selection: object) -> tuple[int, int, int]:
    """Tools, bytes and estimated tokens (4 bytes a token) of the tools/list result as a client receives it."""
    app = create_app(Settings.model_validate(selection))

    async def listed() -> bytes:
        async with Client(app) as client:
            tools = (await client.list_tools()).tools
            return json.dumps([t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]).encode()

    body = anyio.run(listed)
    count = len(json.loads(body))
    return count, len(body), round(len(body) / 4)


def model_visible_size(**selection: object) -> int:
    """What a model reads of the tools: the UTF-8 length of compact {"name", "description", "input_schema"}, summed."""
    app = create_app(Settings.model_validate(selection))

    async def listed() -> int:
        async with Client(app) as client:
            tools = (await client.list_tools()).tools
        return sum(
            len(json.dumps({"name": t.name, "description": t.description, "input_schema": t.input_schema},
                           separators=(",", ":"), ensure_ascii=False).encode())
            for t in tools
        )  # fmt: skip

    return anyio.run(listed)


def test_the_tools_a_model_reads_stay_within_the_context_budget_and_the_readme_says_how_much() -> None:
    default, every = model_visible_size(), model_visible_size(toolsets=("all",))
    assert default <= DEFAULT_BUDGET, f"the default toolsets take {default:,} bytes of context"
    assert every <= ALL_BUDGET, f"all toolsets take {every:,} bytes of context"
    readme = README.read_text()
    for row in (f"| `default` | {len(ALL)} | {default:,} |", f"| `all` | {len(EVERY)} | {every:,} |"):
        assert row in readme, f"README's context-budget table is stale; expected the row {row!r}"


def test_the_readme_states_the_current_size_of_the_tool_list() -> None:
    readme = README.read_text()
    for label, selection in (
        ("default toolsets", {}),
        ("`--read-only`", {"read_only": True}),
        ("`--toolsets all`", {"toolsets": ("all",)}),
    ):
        count, size, tokens = tools_list_size(**selection)
        row = f"| {label} | {count} | {size:,} | ~{tokens:,} |"
        assert row in readme, f"README's tool-list size table is stale; expected the row {row!r}"
    # The read-only row counts what the declarations say reads, not what the selection code computes.
    reading = [spec for spec in tools.ALL if spec.toolset in DEFAULT_TOOLSETS and spec.read_only]
    assert re.search(rf"\| `--read-only` \| {len(reading)} \|", readme)
