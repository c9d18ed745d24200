"""The server as users run it: a `flashsnap-mcp` subprocess over stdio, driven by the SDK's client."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.sandbox import Emulator, EmulatorState
from tests.conftest import MODES
from tests.results import error
from tests.walkthrough import walk_every_tool

COMMAND = shutil.which("flashsnap-mcp", path=str(Path(sys.executable).parent)) or "flashsnap-mcp"


def params(*args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NEUROFLASH_", "NEURALSNAP_", "FLASHSNAP_"))}
    return StdioServerParameters(command=COMMAND, args=list(args), env={**base, **(env or {})})


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_works_over_stdio_in_sandbox_mode(mode: str) -> None:
    with anyio.fail_after(60):
        async with Client(params("--sandbox", "--toolsets", "all"), mode=mode) as client:
            assert "SANDBOX MODE" in (client.instructions or "")
            workspaces = await walk_every_tool(client, "Stdio works")
            assert len(workspaces["workspaces"]) == 2
            spent = workspaces["workspaces"][1]["id"]
            err = error(
                await client.call_tool(
                    "generate", {"model": "gpt-4.1-mini", "prompt": "x", "workspace_id": spent, "max_tokens": 500}
                )
            )
            assert err["code"] == "quota_exhausted"


async def test_a_subprocess_shares_one_token_across_calls(emulator: Emulator, state: EmulatorState) -> None:
    with anyio.fail_after(60):
        async with (
            Client(params(env=emulator.environment()), mode="legacy") as client,
            anyio.create_task_group() as tg,
        ):
            for _ in range(10):
                tg.start_soon(client.call_tool, "list_workspaces", {})
    assert state.count("token") == 1
    assert state.count_status("workspaces", 200) == 10


async def test_a_subprocess_without_credentials_starts_and_names_the_variables() -> None:
    with anyio.fail_after(60):
        async with Client(params(), mode="legacy") as client:
            err = error(await client.call_tool("check_quota", {}))
    assert "NEUROFLASH_CLIENT_ID" in err["message"]


async def test_every_line_on_stdout_is_a_json_rpc_message() -> None:
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "generate",
                "arguments": {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 500},
                "_meta": {"progressToken": "p1"},
            },
        },
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "snapshot", "arguments": {}}},
    ]
    with anyio.fail_after(60):
        async with await anyio.open_process([COMMAND, "--sandbox", "--log-level", "DEBUG"]) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            lines: list[str] = []
            buffer = b""
            for message in requests:
                await process.stdin.send(json.dumps(message).encode() + b"\n")
                wanted = message.get("id")
                while wanted is not None and not any(f'"id":{wanted}' in line.replace(" ", "") for line in lines):
                    chunk = await process.stdout.receive()
                    buffer += chunk
                    *complete, rest = buffer.split(b"\n")
                    buffer = rest
                    lines += [c.decode() for c in complete if c]
            await process.stdin.aclose()
            async for chunk in process.stdout:
                buffer += chunk
            lines += [c.decode() for c in buffer.split(b"\n") if c]
            await process.wait()
    messages = [json.loads(line) for line in lines]  # every line parses
    assert all(m["jsonrpc"] == "2.0" for m in messages)
    assert any(m.get("method") == "notifications/progress" for m in messages)
    assert {m.get("id") for m in messages} >= {1, 2, 3, 4}


def test_help_explains_every_option_and_variable() -> None:
    import subprocess

    out = subprocess.run([COMMAND, "--help"], capture_output=True, text=True, check=True, timeout=60).stdout
    for needle in ("--sandbox", "--sandbox-reset", "--transport", "--host", "--port", "--log-level"):
        assert needle in out
    from server.config import ENVIRONMENT

    for var, _, _ in ENVIRONMENT:
        assert var in out
