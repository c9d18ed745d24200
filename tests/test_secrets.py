"""Planted canary secrets never show: not on stdout, in stderr logs at DEBUG, in results, in notifications
or in error texts, on happy and failure paths alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import stdio_client

from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import Fault
from tests.test_stdio import params

CANARY_ID = "canary-client"
CANARY_SECRET = "canary-secret-7f3a9c1e5b"
CANARY_KEY = "ns_test_canary_key_4d2e8b6a"
TOKEN_PREFIX = "nf_at_"


async def run_scenarios(env: dict[str, str], errlog: Path, seen: list[str], state: EmulatorState) -> None:
    async def on_message(message: Any) -> None:
        seen.append(repr(message))

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(f"{progress} {total} {message}")

    with errlog.open("a") as log, anyio.fail_after(60):
        transport = stdio_client(params("--log-level", "DEBUG", env=env), errlog=log)
        async with Client(transport, mode="legacy", message_handler=on_message) as client:

            async def call(tool: str, args: dict[str, Any]) -> None:
                result = await client.call_tool(tool, args, progress_callback=on_progress)
                seen.append(result.model_dump_json(by_alias=True))

            await call("list_workspaces", {})
            await call("check_quota", {})
            await call("list_models", {})
            await call("generate", {"model": "gpt-4.1-mini", "prompt": "Hi"})
            await call("snapshot", {"name": "n", "core": "c"})
            await call("search_snapshots", {"query": "n"})
            await call("get_snapshot", {"id": "missing"})
            state.revoke_tokens()  # a 401, a refresh and a replay
            await call("list_models", {})
            state.inject("chat", Fault(status=502))
            await call("generate", {"model": "gpt-4.1-mini", "prompt": "Hi"})
            state.inject("chat", Fault(cut_after_chunks=1))
            await call("generate", {"model": "gpt-4.1-mini", "prompt": "Hi"})
            state.inject("workspaces", Fault(body="malformed", times=4))
            await call("list_workspaces", {})
            await call("generate", {"model": "gpt-4.1-mini", "prompt": 5})


async def test_canary_secrets_never_leave_the_server(tmp_path: Path) -> None:
    state = EmulatorState()
    state.clients[CANARY_ID] = CANARY_SECRET
    state.api_keys[CANARY_KEY] = "brain-canary"
    seen: list[str] = []
    errlog = tmp_path / "stderr.log"
    with Emulator(state) as emulator:
        good = {
            **emulator.environment(),
            "NEUROFLASH_CLIENT_ID": CANARY_ID,
            "NEUROFLASH_CLIENT_SECRET": CANARY_SECRET,
            "NEURALSNAP_API_KEY": CANARY_KEY,
        }
        await run_scenarios(good, errlog, seen, state)
        # The failure paths of rejected credentials, in a second server: the secret is wrong, the key revoked.
        del state.api_keys[CANARY_KEY]
        state.clients[CANARY_ID] = "rotated-elsewhere"
        await run_scenarios(good, errlog, seen, state)
    tokens = state.issued
    assert len(tokens) >= 2  # the access tokens the emulator issued, the revoked one too
    stderr = errlog.read_text()
    assert "DEBUG" in stderr  # the log was as verbose as it gets
    for canary in (CANARY_SECRET, CANARY_KEY, *tokens):
        assert canary not in stderr, f"{canary[:8]}… leaked to stderr"
        for item in seen:
            assert canary not in item, f"{canary[:8]}… leaked to the client"
