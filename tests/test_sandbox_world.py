"""The sandbox world outlives a process: `--sandbox` processes of one user are one upstream, whose
snapshots, words used, tokens and rate-limit windows live in a file in the state directory."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import stat
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from server.clock import FakeClock
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.runner import NEURALSNAP_PREFIX, TOKEN_PREFIX, seed_sandbox
from server.sandbox.world import FILENAME, WorldFile
from tests.results import data, error
from tests.test_status import status
from tests.test_stdio import params

GENERATE = {"model": "gpt-4.1-mini", "prompt": "A line about shared worlds.", "max_tokens": 12}
SNAPSHOT = {"name": "One upstream", "core": "Every sandbox process sees the same world.", "tags": ["world"]}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plant(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)


def words_used(quota: dict[str, Any]) -> int:
    tokens = next(q for q in quota["quotas"] if q["usage_type"] == "tokens")
    assert tokens["daily"]["used"] == tokens["monthly"]["used"]
    used: int = tokens["monthly"]["used"]
    return used


async def test_sandbox_processes_share_snapshots_and_words(state_dir: Path) -> None:
    with anyio.fail_after(90):
        async with (
            Client(params("--sandbox"), mode="legacy") as first,
            Client(params("--sandbox"), mode="legacy") as second,
        ):
            spent = data(await first.call_tool("generate", GENERATE))["words_used"]
            saved = data(await first.call_tool("snapshot", SNAPSHOT))
            # Two processes at once: what one spends and saves, the other's upstream knows.
            assert words_used(data(await second.call_tool("check_quota", {}))) == spent
            assert data(await second.call_tool("get_snapshot", {"id": saved["id"]}))["core"] == SNAPSHOT["core"]
        # A process started afterwards, as a framework that opens one per call does.
        async with Client(params("--sandbox"), mode="legacy") as later:
            found = data(await later.call_tool("search_snapshots", {"query": "same world"}))
            assert [s["id"] for s in found["snapshots"]] == [saved["id"]]
            assert words_used(data(await later.call_tool("check_quota", {}))) == spent
    world = state_dir / FILENAME
    assert mode(world) == 0o600
    assert mode(state_dir) == 0o700


async def test_sandbox_reset_forgets_the_world(state_dir: Path) -> None:
    with anyio.fail_after(90):
        async with Client(params("--sandbox"), mode="legacy") as first:
            assert data(await first.call_tool("generate", GENERATE))["words_used"] > 0
            saved = data(await first.call_tool("snapshot", SNAPSHOT))
        with contextlib.closing(WorldFile(state_dir / FILENAME)) as world:
            assert world.snapshot(saved["id"]) is not None  # there was something to forget
        async with Client(params("--sandbox-reset"), mode="legacy") as fresh:
            assert "SANDBOX MODE" in (fresh.instructions or "")
            assert error(await fresh.call_tool("get_snapshot", {"id": saved["id"]}))["code"] == "not_found"
            assert words_used(data(await fresh.call_tool("check_quota", {}))) == 0


async def test_a_corrupt_world_file_warns_once_and_the_sandbox_still_works(state_dir: Path, tmp_path: Path) -> None:
    world = state_dir / FILENAME
    garbage = b"this is not a database\n" * 200
    plant(world, garbage)
    errlog = tmp_path / "stderr.log"
    with errlog.open("w") as log, anyio.fail_after(90):
        async with Client(stdio_client(params("--sandbox"), errlog=log), mode="legacy") as client:
            saved = data(await client.call_tool("snapshot", SNAPSHOT))
            assert data(await client.call_tool("get_snapshot", {"id": saved["id"]}))["name"] == SNAPSHOT["name"]
    stderr = errlog.read_text()
    assert len([line for line in stderr.splitlines() if "sandbox world" in line]) == 1, stderr
    assert str(world) in stderr
    assert "--sandbox-reset" in stderr
    assert world.read_bytes() == garbage  # left for the user to look at; nothing was written over it
    # The advice works: a reset starts a usable world in its place.
    with errlog.open("w") as log, anyio.fail_after(90):
        async with Client(stdio_client(params("--sandbox-reset"), errlog=log), mode="legacy") as client:
            assert data(await client.call_tool("snapshot", SNAPSHOT))["name"] == SNAPSHOT["name"]
    assert "sandbox world" not in errlog.read_text()
    with contextlib.closing(WorldFile(world)) as reopened:
        assert reopened.snapshot_count() == 1


async def test_with_memory_state_the_world_stays_in_the_process(state_dir: Path) -> None:
    with anyio.fail_after(60):
        async with Client(params("--sandbox", env={"FLASHSNAP_STATE": "memory"}), mode="legacy") as client:
            data(await client.call_tool("snapshot", SNAPSHOT))
    assert not (state_dir / FILENAME).exists()


def test_two_emulators_on_one_world_are_one_upstream(state_dir: Path, clock: FakeClock) -> None:
    """Tokens, snapshots and the rate-limit window, over real HTTP to two emulators on one world file."""
    states = [seed_sandbox(EmulatorState(clock, world=state_dir / FILENAME)) for _ in range(2)]
    with (
        contextlib.closing(states[0]),
        contextlib.closing(states[1]),
        Emulator(states[0]) as a,
        Emulator(states[1]) as b,
        httpx2.Client(timeout=10) as http,
    ):
        a.state.set_rate_limit(2, 3600)
        b.state.set_rate_limit(2, 3600)
        form = {"grant_type": "client_credentials", "client_id": catalog.DEMO_CLIENT_ID}
        form["client_secret"] = catalog.DEMO_CLIENT_SECRET
        token = http.post(f"{a.url}{TOKEN_PREFIX}/oauth/v2/token", data=form).json()["access_token"]
        assert b.state.token_valid(token)
        key = {"Authorization": f"Bearer {catalog.DEMO_API_KEY}"}
        created = http.post(f"{a.url}{NEURALSNAP_PREFIX}/snapshots", headers=key, json=SNAPSHOT)
        listed = http.get(f"{b.url}{NEURALSNAP_PREFIX}/snapshots?limit=1", headers=key)
        assert listed.json() == {"data": [created.json()["data"]], "count": 1}
        assert listed.headers["X-RateLimit-Remaining"] == "0"  # the window of both: 2 sends, one on each
        assert http.get(f"{a.url}{NEURALSNAP_PREFIX}/snapshots", headers=key).status_code == 429
        b.state.revoke_tokens()
        assert not a.state.token_valid(token)


def test_a_world_of_another_version_or_an_unusable_directory_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other-version.sqlite3"
    WorldFile(other).close()
    with sqlite3.connect(other) as db:
        db.execute("PRAGMA user_version = 99")
    blocked = tmp_path / "a-file" / FILENAME
    blocked.parent.write_text("a file where the state directory should be")
    with caplog.at_level(logging.WARNING):
        for path in (other, blocked):
            state = EmulatorState(world=path)
            assert not state.shared
            state.add_snapshot({"id": "s1", "brain_id": "b", "created_at": "2026-01-01T00:00:00Z"})
            assert state.snapshot("s1") is not None  # the world lives in this process instead
    warnings = [r.getMessage() for r in caplog.records if "sandbox world" in r.getMessage()]
    assert len(warnings) == 2
    assert "another version" in warnings[0]


def test_a_reset_empties_the_world_for_processes_that_have_it_open(state_dir: Path, clock: FakeClock) -> None:
    world = state_dir / FILENAME
    running = seed_sandbox(EmulatorState(clock, world=world))
    running.add_snapshot({"id": "s1", "brain_id": "b", "created_at": "2026-01-01T00:00:00Z"})
    running.charge(catalog.MARKETING_WORKSPACE, 40)
    token = running.issue_token(catalog.DEMO_CLIENT_ID)
    seed_sandbox(EmulatorState(clock, world=world, reset_world=True)).close()
    assert running.shared
    assert running.snapshot("s1") is None
    assert not running.token_valid(token)
    assert running.quota(catalog.MARKETING_WORKSPACE, "tokens").used == 0  # the seed fills the world in again
    assert running.quota(catalog.SIDE_PROJECT_WORKSPACE, "tokens").available == 0
    running.close()


async def test_sandbox_processes_in_turn_are_one_account_with_one_token() -> None:
    """The emulator listens on a new port each time, but the account is the world's, not the port's."""
    with anyio.fail_after(90):
        for _ in range(2):
            async with Client(params("--sandbox")) as client:
                data(await client.call_tool("check_quota", {}))
                data(await client.call_tool("search_snapshots", {"query": "one account"}))
    done = await anyio.to_thread.run_sync(status, "--json")
    assert done.returncode == 0, done.stderr
    accounts = json.loads(done.stdout)["accounts"]
    assert sorted(a["service"] for a in accounts) == ["neuralsnap", "neuroflash"]  # not one pair per process
    neuralsnap = next(a for a in accounts if a["service"] == "neuralsnap")
    assert neuralsnap["gate"]["limit"] - neuralsnap["gate"]["remaining"] == 2  # one budget, both processes' sends
