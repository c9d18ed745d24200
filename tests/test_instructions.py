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
from tests.conftest import MODES
from tests.test_tool_selection import ALL, EVERY, EVERY_WRITER, WRITERS, http_client
from tests.transports import TRANSPORTS, serve


def named(text: str | None) -> set[str]:
    """The tool names the text mentions as words."""
    return {name for name in EVERY if re.search(rf"\b{re.escape(name)}\b", text or "")}


# The operator's selections: the command's flags, the tools the instructions (and the tool list) then name, and
# phrases the instructions must and must not carry.
SELECTIONS = [
    pytest.param(("--read-only",), ALL - WRITERS, ("maybe_processed",), ("Never repeat",), id="read-only"),
    pytest.param(
        ("--read-only", "--toolsets", "all"), EVERY - EVERY_WRITER, ("maybe_processed",), ("Never repeat",),
        id="read-only-all",
    ),
    pytest.param(
        ("--tools", "check_quota,crystallize"), {"check_quota", "crystallize"}, ("crystallize tokens", "(crystallize)"),
        (), id="tools",
    ),
    pytest.param(("--toolsets", "twins,neuralsnap-write"), EVERY - ALL, ("ask_twins",), (), id="toolsets"),
    pytest.param(("--toolsets", "all", "--exclude-tools", "generate"), EVERY - {"generate"}, (), (), id="exclude"),
]  # fmt: skip


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
async def test_instructions_name_the_default_tools_and_say_how_quotas_waits_and_failures_work(
    emulator: Emulator, clock: FakeClock, transport: str, mode: str
) -> None:
    with anyio.fail_after(60):
        async with serve(transport, emulator, clock, mode=mode) as client:
            text = client.instructions or ""
    assert named(text) == ALL
    assert "maybe_processed" in text
    assert "Never repeat a call that creates or spends (generate or snapshot)" in text
    assert "max_wait_s" in text
    assert "retry_after_s" in text
    assert "daily and monthly quota" in text
    assert "SANDBOX MODE" not in text


@pytest.mark.parametrize(("flags", "expected", "present", "absent"), SELECTIONS)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
async def test_instructions_follow_the_operators_selection(
    emulator: Emulator,
    clock: FakeClock,
    flags: tuple[str, ...],
    expected: set[str],
    present: tuple[str, ...],
    absent: tuple[str, ...],
    transport: str,
    mode: str,
) -> None:
    with anyio.fail_after(60):
        async with serve(transport, emulator, clock, *flags, mode=mode) as client:
            text = client.instructions or ""
            assert named(text) == expected == {t.name for t in (await client.list_tools()).tools}
    assert all(phrase in text for phrase in present)
    assert not any(phrase in text for phrase in absent)


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
