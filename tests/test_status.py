"""`flashsnap-mcp status` shows the state two running servers share: token expiry, rate limit, quotas, slots."""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from mcp import Client

from server.cli.status import CLEAR
from server.clock import FakeClock
from server.sandbox import Emulator, EmulatorState, catalog
from server.state.memory import MemoryStore
from server.state.redis import RedisStore
from server.state.sqlite import SQLiteStore
from server.state.store import Change, Store
from tests.results import data
from tests.servers import http_replica, valkey
from tests.test_stdio import COMMAND, params

LIMIT = 50


def status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The same environment as the servers: the test's state directory (XDG_CACHE_HOME), and the credentials
    # given (what is sealed opens only with them).
    return subprocess.run(
        [COMMAND, "status", *args], capture_output=True, text=True, timeout=60,
        env={**(params().env or {}), **(env or {})}, check=False,
    )  # fmt: skip


async def test_status_shows_what_two_servers_share() -> None:
    state = EmulatorState()  # the real clock: the servers run in their own processes
    state.set_rate_limit(LIMIT, 3600.0)
    with Emulator(state) as emulator:
        env = emulator.environment()
        with anyio.fail_after(90):
            async with (
                http_replica(env) as one,
                http_replica(env) as two,
                Client(f"{one}/mcp") as first,
                Client(f"{two}/mcp") as second,
            ):
                data(await first.call_tool("check_quota", {}))
                for i in range(3):
                    data(await first.call_tool("snapshot", {"name": f"a{i}", "core": "from one"}))
                for i in range(2):
                    data(await second.call_tool("snapshot", {"name": f"b{i}", "core": "from two"}))
                data(await second.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 500}))

                done = await anyio.to_thread.run_sync(functools.partial(status, "--json", env=env))
                text = await anyio.to_thread.run_sync(functools.partial(status, env=env))
                blind = await anyio.to_thread.run_sync(status, "--json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    assert view["store"] == "sqlite"
    by_service = {a["service"]: a for a in view["accounts"]}
    assert set(by_service) == {"neuroflash", "neuralsnap"}
    assert state.count("token") == 1  # both servers used the one token...
    token = by_service["neuroflash"]["token"]
    assert token["valid_until"] is not None  # ... and status says until when
    assert 0 < token["valid_for_s"] <= state.token_ttl_s
    gate = by_service["neuralsnap"]["gate"]
    snapshots = state.count("snapshot_create")
    assert snapshots == 5
    assert gate["limit"] == LIMIT
    assert gate["remaining"] == LIMIT - snapshots  # sends of both servers, counted in one budget
    assert gate["resets_at"] is not None
    assert gate["penalty_until"] is None
    assert gate["queued"] == 0
    quota = by_service["neuroflash"]["quotas"][catalog.MARKETING_WORKSPACE]
    with state.lock:
        daily_used = state.workspaces[catalog.MARKETING_WORKSPACE].quotas["tokens"].used_daily
    assert quota["daily_used"] == daily_used > 0  # the words server two spent, on the quota server one read
    assert by_service["neuroflash"]["generation_slots"].get(catalog.MARKETING_WORKSPACE, 0) == 0

    assert text.returncode == 0, text.stderr
    assert f"limit {LIMIT}, remaining {LIMIT - snapshots}" in text.stdout
    assert "valid until" in text.stdout
    for secret in (*state.issued, catalog.DEMO_API_KEY, catalog.DEMO_CLIENT_SECRET):
        assert secret not in done.stdout + text.stdout + done.stderr + text.stderr

    # Without the credentials, what is sealed stays sealed, and says so; the plain rate limit still shows.
    assert blind.returncode == 0, blind.stderr
    unsealed = {a["service"]: a for a in json.loads(blind.stdout)["accounts"]}
    assert unsealed["neuroflash"]["sealed"] is True
    assert "token" not in unsealed["neuroflash"]
    assert unsealed["neuralsnap"]["gate"]["remaining"] == LIMIT - snapshots


async def test_watch_redraws_in_place_until_stopped(state_dir: Path) -> None:
    store = SQLiteStore.in_directory(state_dir, FakeClock())  # a server ran here once
    await store.update("accounts", lambda doc: Change(None, {}))
    await store.aclose()
    frames = ""
    with anyio.fail_after(30):
        async with await anyio.open_process(
            [COMMAND, "status", "--watch", "--interval", "0.1"], env=params().env
        ) as process:
            assert process.stdout is not None
            async for chunk in TextReceiveStream(process.stdout):
                frames += chunk
                if frames.count(CLEAR) >= 2:
                    break
            process.terminate()
    assert frames.startswith(CLEAR)
    assert frames.count("flashsnap-mcp status at") >= 2


def test_status_without_shared_state_says_so() -> None:
    done = subprocess.run(
        [COMMAND, "status"], capture_output=True, text=True, timeout=60,
        env={**(params().env or {}), "FLASHSNAP_STATE": "memory"}, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no shared state" in done.stderr
    assert done.stdout == ""


def test_status_of_a_mistyped_state_directory_says_so_and_creates_nothing(tmp_path: Path) -> None:
    mistyped = tmp_path / "flashsnap-mpc"
    done = subprocess.run(
        [COMMAND, "status"], capture_output=True, text=True, timeout=60,
        env={**(params().env or {}), "FLASHSNAP_STATE_DIR": str(mistyped)}, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert str(mistyped) in done.stderr
    assert not mistyped.exists()


def put(_: dict[str, Any] | None, *, ttl_s: float) -> Change[None]:
    return Change(None, {"x": 1}, ttl_s)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
async def test_every_store_lists_live_keys_by_literal_prefix(kind: str, tmp_path: Path, clock: FakeClock) -> None:
    with contextlib.ExitStack() as stack:
        if kind == "memory":
            store: Store = MemoryStore(clock)
        elif kind == "sqlite":
            store = SQLiteStore.in_directory(tmp_path, clock)
        else:
            store = RedisStore(stack.enter_context(valkey(tmp_path)).url, prefix="t*[x]:")
        try:
            for key, ttl in (("a:quota:1", 60.0), ("a:quota:2", 60.0), ("a%_:quota:3", 60.0), ("a:gate", 60.0),
                             ("a:quota:gone", 1.0)):  # fmt: skip
                await store.update(key, functools.partial(put, ttl_s=ttl))
            if kind != "redis":  # Redis expires keys by its own clock; the others by the injected one
                clock.advance(2)
                assert await store.keys("a:quota:") == ["a:quota:1", "a:quota:2"]
            assert "a%_:quota:3" not in await store.keys("a:")  # % and _ are no wildcards
            assert await store.keys("a%_:") == ["a%_:quota:3"]
            assert await store.keys("b:") == []
        finally:
            await store.aclose()
