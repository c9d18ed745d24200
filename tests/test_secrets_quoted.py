"""Secrets an upstream quotes back are masked wherever the text goes: an identity server that echoes the client
secret in its error, an API that names the bare access token it refused.

Each quote is injected in the emulator (`Fault(quotes_credential=True)`), and every way out is read: the tool
result (text, `_meta`, structured content), the server's log at DEBUG, the shared store's files (the token lease
keeps the last failure's text for the other processes), `status`, and `check` (text and `--json`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from server import known_secrets
from server.cli import status
from server.clock import FakeClock, SystemClock
from server.config import Settings
from server.credentials import lease
from server.observe import logs
from server.runtime import seals
from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import Fault
from server.state import accounts
from server.state.layout import AccountKeys
from server.state.sealing import SealedStore
from server.state.sqlite import SQLiteStore
from server.upstream.opening import account_key
from tests.test_stdio import COMMAND, params

CANARY_ID = "canary-echo-client"
CANARY_SECRET = "canary-echoed-secret-51c9e0d7"

SECRET_ECHOES = {  # the identity server's error quotes the client secret it was sent
    "401 with words around it": Fault(status=401, message="invalid_client: client_secret {client_secret} is wrong"),
    "400 bare": Fault(status=400, message="{client_secret}"),
    "OAuth error in a 200": Fault(status=200, message="invalid_client {client_secret}"),
    "the secret at the cut": Fault(status=401, message="x" * 40 + " {client_secret} " + "y" * 400),
}
TOKEN_QUOTES = {  # an API names the bearer token it refused: route, fault, the tool that meets it
    "quota 403": ("quotas", Fault(status=403, message="token {access_token} may not read this"), "check_quota", {}),
    "models 400 bare": ("models", Fault(status=400, message="{access_token}"), "list_models", {}),
    "chat 403": (
        "chat",
        Fault(status=403, message="token {access_token} refused"),
        "generate",
        {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 5},
    ),
    "brand voices 422": ("brand_voices", Fault(status=422, message="{access_token}!"), "list_brand_voices", {}),
}


def quoting(fault: Fault, times: int = 1) -> Fault:
    return dataclasses.replace(fault, quotes_credential=True, times=times)


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`flashsnap-mcp *args` with `env`, as a user runs it."""
    return subprocess.run(
        [COMMAND, *args], capture_output=True, text=True, timeout=60, env=params(env=env).env, check=False
    )


def stored_bytes(state_dir: Path) -> str:
    """Every byte of the shared state's files (the database, its WAL), as another user could read them."""
    return b"".join(path.read_bytes() for path in state_dir.glob("*") if path.is_file()).decode("latin-1")


async def stored_token(settings: Settings, state_dir: Path) -> str:
    """The account's token document as a server holding the secret reads it (whatever its age)."""
    store = SealedStore(SQLiteStore.in_directory(state_dir, SystemClock()), seals(settings))
    try:
        prefix = account_key(settings, "neuroflash", settings.neuroflash_token_url, CANARY_ID)
        return json.dumps(await store.get(AccountKeys(prefix).token))
    finally:
        await store.aclose()


def echo_env(emulator: Emulator) -> dict[str, str]:
    return {**emulator.environment(), "NEUROFLASH_CLIENT_ID": CANARY_ID, "NEUROFLASH_CLIENT_SECRET": CANARY_SECRET}


async def call_over_stdio(env: dict[str, str], errlog: Path, tool: str, args: dict[str, Any]) -> str:
    """One tool call to a stdio server logging at DEBUG; the whole result as the client received it."""
    with errlog.open("a") as log, anyio.fail_after(60):
        async with Client(stdio_client(params("--log-level", "DEBUG", env=env), errlog=log), mode="legacy") as client:
            result = await client.call_tool(tool, args)
    assert result.is_error
    return result.model_dump_json(by_alias=True)


@pytest.mark.parametrize("fault", SECRET_ECHOES.values(), ids=SECRET_ECHOES.keys())
async def test_a_client_secret_the_identity_server_echoes_never_leaves(
    fault: Fault, tmp_path: Path, state_dir: Path
) -> None:
    state = EmulatorState()
    state.clients[CANARY_ID] = "the-real-secret-elsewhere"  # so the echo is the only answer
    errlog = tmp_path / "stderr.log"
    with Emulator(state) as emulator:
        state.inject("token", quoting(fault))
        result = await call_over_stdio(echo_env(emulator), errlog, "list_workspaces", {})
    assert state.count("token") == 1  # a rejection is final: never retried
    assert "***" in result  # the quote reached the result, masked (not merely dropped)
    stored = await anyio.to_thread.run_sync(stored_bytes, state_dir)
    # The lease keeps the failure for the other processes, sealed (the secret opens it) and masked.
    settings = Settings.from_env(echo_env(emulator))
    kept = await stored_token(settings, state_dir)
    assert "rejected" in kept
    assert CANARY_SECRET not in kept
    for out, where in ((result, "the tool result"), (errlog.read_text(), "the log"), (stored, "the state files")):
        assert CANARY_SECRET not in out, f"the echoed secret reached {where}"
        assert CANARY_SECRET[:16] not in out, f"part of the echoed secret reached {where}"


@pytest.mark.parametrize("flags", [(), ("--json",)], ids=["text", "json"])
async def test_check_masks_a_client_secret_the_identity_server_echoes(flags: tuple[str, ...]) -> None:
    state = EmulatorState()
    state.clients[CANARY_ID] = "the-real-secret-elsewhere"
    with Emulator(state) as emulator:
        state.inject("token", quoting(SECRET_ECHOES["401 with words around it"]))
        env = echo_env(emulator)
        done = await anyio.to_thread.run_sync(lambda: command(env, "check", *flags))
    assert done.returncode == 1
    assert "client_secret *** is wrong" in done.stdout  # quoted as the identity server said it, masked
    assert CANARY_SECRET not in done.stdout + done.stderr


async def test_a_token_an_upstream_quotes_never_leaves(tmp_path: Path) -> None:
    """Each API that names the token (the table), met in turn by one stdio server logging at DEBUG."""
    state = EmulatorState()
    errlog = tmp_path / "stderr.log"
    results: dict[str, str] = {}
    with Emulator(state) as emulator, errlog.open("a") as log, anyio.fail_after(90):
        env = {**emulator.environment(), "FLASHSNAP_TOOLSETS": "all"}
        async with Client(stdio_client(params("--log-level", "DEBUG", env=env), errlog=log), mode="legacy") as client:
            for case, (route, fault, tool, args) in TOKEN_QUOTES.items():
                state.inject(route, quoting(fault))
                result = await client.call_tool(tool, args)
                assert result.is_error, case
                results[case] = result.model_dump_json(by_alias=True)
    logged = errlog.read_text()
    assert state.issued
    for case, sent in results.items():
        assert "***" in sent, f"{case}: the quote did not reach the result"  # quoted, and masked
        for token in state.issued:
            assert token not in sent, f"{case}: the token reached the tool result"
    for token in state.issued:
        assert token not in logged, "the token reached the log"


async def test_status_masks_a_secret_a_stored_failure_quotes(state_dir: Path) -> None:
    """A failure text stored unmasked (by an older version, sealed as a server seals it) still shows masked: status
    knows the secrets. Read on the injected clock, within the failure's lifetime."""
    clock = FakeClock()
    env = {"NEUROFLASH_CLIENT_ID": CANARY_ID, "NEUROFLASH_CLIENT_SECRET": CANARY_SECRET}
    settings = Settings.from_env(env)
    store = SealedStore(SQLiteStore.in_directory(state_dir, clock), seals(settings))
    prefix = account_key(settings, "neuroflash", settings.neuroflash_token_url, CANARY_ID)
    await accounts.register(store, accounts.Account(prefix, "neuroflash", "id.example", clock.now()))
    failed = lease.Failed("rejected", f"neuroflash said: bad secret {CANARY_SECRET}", "Check it.", 401)
    await store.update(
        AccountKeys(prefix).token,
        lambda doc: lease.store_failure(doc, clock.now(), owner="x", failed=failed, memory_s=lease.FAILURE_MEMORY_S),
    )
    view = await status.gather(store, clock)
    await store.aclose()
    mask = logs.SecretMask(settings.secrets)  # what `status` masks its output with (server/cli/status.py main)
    for shown in (mask.mask(status.render(view)), mask.mask(json.dumps(view))):
        assert "bad secret ***" in shown
        assert CANARY_SECRET not in shown


def test_known_secrets_mask_by_value_and_keep_only_the_newest_tokens() -> None:
    known_secrets.hold("short")  # under 8 characters: never masked by value (it would mask ordinary words)
    known_secrets.hold("abcdefgh12345678", live=True)
    assert known_secrets.mask("short abcdefgh12345678.") == "short ***."
    for n in range(known_secrets.MAX_LIVE):
        known_secrets.hold(f"later-token-{n:04d}", live=True)
    assert known_secrets.mask("abcdefgh12345678") == "abcdefgh12345678"  # replaced long since: forgotten
    assert known_secrets.mask("later-token-0031") == "***"
