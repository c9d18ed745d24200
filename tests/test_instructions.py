"""The server's instructions are built from the tools that are on: they never name a tool that is off."""

from __future__ import annotations

import re

import anyio
import pytest

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import MODES, Connect
from tests.test_tool_selection import ALL, EVERY, EVERY_WRITER, WRITERS, http_client


def named(text: str | None) -> set[str]:
    """The tool names the text mentions as words."""
    return {name for name in EVERY if re.search(rf"\b{re.escape(name)}\b", text or "")}


@pytest.mark.parametrize("mode", MODES)
async def test_instructions_name_the_default_tools_and_say_how_quotas_waits_and_failures_work(
    connect: Connect, mode: str
) -> None:
    async with connect(mode=mode) as client:
        text = client.instructions or ""
        assert named(text) == ALL
        assert "maybe_processed" in text
        assert "Never repeat a call that creates or spends (generate or snapshot)" in text
        assert "max_wait_s" in text
        assert "retry_after_s" in text
        assert "daily and monthly quota" in text
        assert "SANDBOX MODE" not in text


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_instructions_name_no_tool_that_writes(connect: Connect, mode: str) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_READ_ONLY": "1", "FLASHSNAP_TOOLSETS": "all"}) as client:
        text = client.instructions or ""
        assert named(text) == EVERY - EVERY_WRITER
        assert "Never repeat" not in text  # nothing on creates or spends
        assert "maybe_processed" in text
        assert {t.name for t in (await client.list_tools()).tools} == named(text)


@pytest.mark.parametrize("mode", MODES)
async def test_instructions_follow_tools_and_toolsets(connect: Connect, mode: str) -> None:
    async with connect(mode=mode, read_only=True) as client:
        assert named(client.instructions) == ALL - WRITERS
    async with connect(mode=mode, tools=("check_quota", "crystallize")) as client:
        text = client.instructions or ""
        assert named(text) == {"check_quota", "crystallize"}
        assert "crystallize tokens" in text
        assert "(crystallize)" in text
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "twins,neuralsnap-write"}) as client:
        assert named(client.instructions) == {t.name for t in (await client.list_tools()).tools}
        assert "ask_twins" in (client.instructions or "")
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "all", "FLASHSNAP_EXCLUDE_TOOLS": "generate"}) as client:
        assert named(client.instructions) == EVERY - {"generate"}


@pytest.mark.parametrize("mode", MODES)
async def test_over_http_instructions_follow_the_operator_and_not_the_clients_headers(
    emulator: Emulator, clock: FakeClock, mode: str
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", read_only=True)
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with http_client(server.url, {}, mode) as plain:
            assert named(plain.instructions) == ALL - WRITERS
        # The instructions are sent once, at initialize (server/discover on 2026-07-28), from the operator's
        # selection: a client's X-MCP-* narrowing changes its tool list, not the instructions.
        async with http_client(server.url, {"X-MCP-Tools": "check_quota"}, mode) as narrowed:
            assert {t.name for t in (await narrowed.list_tools()).tools} == {"check_quota"}
            assert named(narrowed.instructions) == ALL - WRITERS
