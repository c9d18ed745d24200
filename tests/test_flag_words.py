"""Yes/no read one way: the settings' words in X-MCP-Readonly, the RFC 9110 list form, and failing closed."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import tools
from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.tooling.spec import DEFAULT_TOOLSETS
from server.transports.http import build_http_app
from tests.results import data, error

ON = {spec.name for spec in tools.ALL if spec.toolset in DEFAULT_TOOLSETS}
READERS = {spec.name for spec in tools.ALL if spec.toolset in DEFAULT_TOOLSETS and spec.read_only}

Lines = list[tuple[str, str]]


def lines(*values: str) -> Lines:
    """The header sent once per value: a separate line each, as a proxy that does not join them forwards it."""
    return [("X-MCP-Readonly", value) for value in values]


YES = [
    *(lines(word) for word in ("1", "true", "True", "TRUE", "yes", "Yes", "on", "ON")),
    lines("true, true"),  # one line, joined by a proxy
    lines("true,yes, 1"),
    lines("true", "true"),  # two lines
    lines("on", "YES"),
]
NO = [
    *(lines(word) for word in ("0", "false", "False", "FALSE", "no", "No", "off", "OFF")),
    lines("false, false"),
    lines("false", "no"),
]
UNREADABLE = [  # anything else narrows: a client that meant read-only and misspelled it gets no writer
    *(lines(word) for word in ("t", "y", "n", "2", "-1", "enabled", "ja", "")),
    lines("true, false"),
    lines("false", "true"),
    lines("false", "t"),
    lines("false,"),  # an empty member is no member: `false` alone, so not narrowed... see below
]
# `false,` is the list of one member `false` (RFC 9110 ignores empty members): it reads as no.
NO.append(UNREADABLE.pop())


async def tools_seen(url: str, headers: Lines) -> tuple[set[str], dict[str, object] | None]:
    """The tools a client sending `headers` lists, and the refusal (or None) of its call to generate."""
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="auto") as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        called = await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "hi", "max_tokens": 5})
        return listed, (error(called) if called.is_error else None)


@pytest.mark.parametrize(
    ("headers", "narrowed"),
    [*((h, True) for h in YES), *((h, False) for h in NO), *((h, True) for h in UNREADABLE)],
    ids=lambda v: repr(v) if not isinstance(v, bool) else ("narrowed" if v else "not-narrowed"),
)
async def test_readonly_header_reads_every_spelling_and_fails_closed(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, headers: Lines, narrowed: bool
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http")
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        listed, refused = await tools_seen(server.url, headers)
    if narrowed:
        assert listed == READERS
        assert refused is not None
        assert refused["code"] == "tool_disabled"
        assert "X-MCP-Readonly" in str(refused["message"])
        assert state.count("chat") == 0
    else:
        assert listed == ON
        assert refused is None
        assert state.count("chat") == 1


async def test_repeated_tools_header_lines_are_one_list(
    emulator: Emulator, clock: FakeClock, state: EmulatorState
) -> None:
    """`X-MCP-Tools` sent on two lines keeps the tools of both, as the same list joined by a proxy does."""
    settings = Settings.from_env(emulator.environment(), transport="streamable-http")
    two_lines = [("X-MCP-Tools", "list_models"), ("X-MCP-Tools", "check_quota, list_workspaces")]
    two_sets = [("X-MCP-Toolsets", "brand"), ("X-MCP-Toolsets", "neuralsnap")]
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        for headers, expected, call in (
            (two_lines, {"list_models", "check_quota", "list_workspaces"}, "list_workspaces"),
            (two_sets, {"list_brand_voices", "snapshot", "search_snapshots", "get_snapshot"}, "list_brand_voices"),
        ):
            http = httpx2.AsyncClient(headers=headers, timeout=30)
            async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client:
                assert {t.name for t in (await client.list_tools()).tools} == expected
                data(await client.call_tool(call, {}))
