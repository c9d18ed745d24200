"""`flashsnap-mcp forget`: what the servers learned in the shared store goes, for one service or all, on request."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from server.cli import forget
from server.cli.status import gather
from server.clock import FakeClock
from server.config import Settings
from server.runtime import open_state
from server.sandbox import Emulator
from server.state import accounts, layout
from tests.conftest import Connect
from tests.results import data
from tests.test_stdio import COMMAND, params


async def learned_keys(settings: Settings, clock: FakeClock) -> dict[str, list[str]]:
    """Every live document of each service's accounts, by service."""
    store = await open_state(settings, clock)
    try:
        found: dict[str, list[str]] = {}
        for account in await accounts.listed(store):
            found.setdefault(account.service, []).extend(await store.keys(layout.AccountKeys(account.key).everything))
        return found
    finally:
        await store.aclose()


async def route_keys(settings: Settings, clock: FakeClock) -> list[str]:
    """Every route document (the neuroflash chat path and model list, per API URL)."""
    store = await open_state(settings, clock)
    try:
        return [key for namespace in layout.ROUTE_NAMESPACES for key in await store.keys(f"{namespace}:")]
    finally:
        await store.aclose()


async def learn_both(connect: Connect) -> None:
    async with connect() as client:
        data(await client.call_tool("check_quota", {}))
        data(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi"}))
        data(await client.call_tool("snapshot", {"name": "n", "core": "c"}))


async def test_forget_one_service_then_all_through_the_store(
    emulator: Emulator, connect: Connect, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env(emulator.environment())
    await learn_both(connect)
    before = await learned_keys(settings, clock)
    assert any(k.endswith(":token") for k in before["neuroflash"])
    assert any(":quota:" in k for k in before["neuroflash"])
    assert [k.rsplit(":", 1)[-1] for k in before["neuralsnap"]] == ["gate"]

    assert await forget.run(forget.parse_args(["neuralsnap", "--yes"]), settings, clock) == 0
    after = await learned_keys(settings, clock)
    assert after.get("neuralsnap", []) == []
    assert sorted(after["neuroflash"]) == sorted(before["neuroflash"])  # the other service keeps what it knows
    assert "forgot 1 documents" in capsys.readouterr().out

    assert await route_keys(settings, clock)  # the chat path that answered, learnt per API URL
    assert await forget.run(forget.parse_args(["all", "--yes"]), settings, clock) == 0
    assert await learned_keys(settings, clock) == {"neuroflash": [], "neuralsnap": []}
    assert await route_keys(settings, clock) == []
    store = await open_state(settings, clock)
    try:
        view = await gather(store, clock)  # status still lists the accounts, with nothing learned
    finally:
        await store.aclose()
    assert {a["service"] for a in view["accounts"]} == {"neuroflash", "neuralsnap"}
    assert all(a["gate"]["limit"] is None for a in view["accounts"])

    assert await forget.run(forget.parse_args(["all"]), settings, clock) == 0
    assert "nothing learned about all" in capsys.readouterr().out


async def test_forget_without_yes_and_without_a_terminal_deletes_nothing(
    emulator: Emulator, connect: Connect, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    settings = Settings.from_env(emulator.environment())
    await learn_both(connect)
    before = await learned_keys(settings, clock)
    monkeypatch.setattr("sys.stdin", io.StringIO())
    assert await forget.run(forget.parse_args(["all"]), settings, clock) == 1
    assert await learned_keys(settings, clock) == before
    captured = capsys.readouterr()
    assert "--yes" in captured.err
    assert all(key in captured.out for keys in before.values() for key in keys)  # it said what it would delete


def command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "forget", *args], capture_output=True, text=True, timeout=60,
        env={**(params().env or {}), **env}, check=False,
    )  # fmt: skip


def test_forget_refuses_the_memory_store_like_status() -> None:
    done = command("all", "--yes", FLASHSNAP_STATE="memory")
    assert done.returncode == 1
    assert "no shared state" in done.stderr


def test_forget_of_a_mistyped_state_directory_creates_nothing(tmp_path: Path) -> None:
    mistyped = tmp_path / "flashsnap-mpc"
    done = command("neuralsnap", "--yes", FLASHSNAP_STATE_DIR=str(mistyped))
    assert done.returncode == 1
    assert not mistyped.exists()


def test_forget_help_names_what_it_deletes() -> None:
    done = command("--help")
    assert done.returncode == 0
    for word in ("neuroflash", "neuralsnap", "all", "--yes", "token", "gate", "quota", "slots"):
        assert word in done.stdout
    assert "forget" in subprocess.run([COMMAND, "--help"], capture_output=True, text=True, check=True).stdout
