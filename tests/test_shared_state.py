"""One account, one token, one budget across real processes: stdio clients, HTTP replicas, a balancer.

The emulator runs on the real clock here (the processes read theirs), and its counters say what
reached the "upstream": how many token requests, how many 429s.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import redis
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from server.clock import FakeClock, SystemClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import Connect
from tests.results import data
from tests.servers import Balancer, Valkey, certificate_authority, free_port, http_replica, tls_terminator, valkey
from tests.test_stdio import COMMAND, params

pytestmark = pytest.mark.anyio
TOKEN = "shared-state-access-token-0123456789"


@pytest.fixture
def real_state() -> EmulatorState:
    return EmulatorState(SystemClock())


@pytest.fixture
def live(real_state: EmulatorState) -> Iterator[Emulator]:
    with Emulator(real_state) as emulator:
        yield emulator


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Valkey]:
    with valkey(tmp_path) as server:
        yield server


async def save(client: Client, n: int) -> dict[str, Any]:
    return data(await client.call_tool("snapshot", {"name": f"note {n}", "core": f"Shared budget note {n}."}))


def assert_one_token_no_429(state: EmulatorState, saved: int) -> None:
    assert state.count("token") == 1
    assert state.count_status("snapshot_create", 429) == 0
    assert state.count("snapshot_create") == saved  # every send paid for a snapshot: none wasted
    assert len(state.snapshots) == saved


async def test_stdio_processes_in_turn_share_one_token(live: Emulator) -> None:
    with anyio.fail_after(120):
        for _ in range(8):  # a framework that opens a process per tool call
            async with Client(params(env=live.environment())) as client:
                data(await client.call_tool("check_quota", {}))
    assert live.state.count("quotas") == 8
    assert live.state.count("token") == 1


async def test_stdio_processes_at_once_share_one_token_and_one_budget(live: Emulator) -> None:
    # 30 saves need three windows. On the real clock, each is short, and the limit is one the rate-limits page's
    # table does not pace at a burst of its own (10 a window would be sent 2 a second: 15 s of waiting).
    live.state.set_rate_limit(12, 2)
    env = {**live.environment(), "FLASHSNAP_MAX_WAIT_S": "60"}
    saved: list[dict[str, Any]] = []

    async def one_process(p: int) -> None:
        async with Client(params(env=env)) as client:
            data(await client.call_tool("list_workspaces", {}))

            async def one_call(n: int) -> None:
                saved.append(await save(client, n))

            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(one_call, p * 10 + i)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for p in range(5):
                tg.start_soon(one_process, p)
    assert len(saved) == 30
    assert_one_token_no_429(live.state, 30)


@contextlib.asynccontextmanager
async def replicas(envs: list[dict[str, str]]) -> AsyncIterator[list[str]]:
    async with contextlib.AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(http_replica(env)) for env in envs]
        yield urls


async def burst_through(balancer: Balancer, mode: str, sessions: int, calls: int) -> int:
    """`sessions` clients through the balancer at once, each a neuroflash call then `calls` snapshots."""
    saved = 0

    async def one_session(s: int) -> None:
        nonlocal saved
        async with Client(f"{balancer.url}/mcp", mode=mode) as client:
            data(await client.call_tool("check_quota", {}))
            for i in range(calls):
                await save(client, s * 100 + i)
                saved += 1

    async with anyio.create_task_group() as tg:
        for s in range(sessions):
            tg.start_soon(one_session, s)
    return saved


async def test_replicas_on_one_redis_share_one_token_and_one_budget(
    live: Emulator, redis_server: Valkey, tmp_path: Path
) -> None:
    live.state.set_rate_limit(20, 2)  # 60 saves need three windows or more; on the real clock, short ones to wait
    base = {**live.environment(), "FLASHSNAP_REDIS_URL": redis_server.url, "FLASHSNAP_MAX_WAIT_S": "60"}
    envs = [{**base, "FLASHSNAP_STATE_DIR": str(tmp_path / f"replica-{n}")} for n in range(3)]
    with anyio.fail_after(180):
        async with replicas(envs) as urls:
            with Balancer(urls) as balancer:
                assert await burst_through(balancer, "auto", sessions=30, calls=2) == 60
                assert set(balancer.served) == set(urls)
    assert_one_token_no_429(live.state, 60)


async def test_stateless_replicas_on_one_machine_serve_legacy_sessions_from_any_replica(live: Emulator) -> None:
    """No Redis: the replicas share the default state directory, and legacy sessions hop between them."""
    live.state.set_rate_limit(20, 2)  # 60 saves need three windows or more; on the real clock, short ones to wait
    env = {**live.environment(), "FLASHSNAP_HTTP_STATELESS": "1", "FLASHSNAP_MAX_WAIT_S": "60"}
    with anyio.fail_after(180):
        async with replicas([env] * 3) as urls:
            with Balancer(urls) as balancer:
                assert await burst_through(balancer, "legacy", sessions=30, calls=2) == 60
                assert set(balancer.served) == set(urls)
    assert_one_token_no_429(live.state, 60)


async def test_a_legacy_session_opened_on_one_replica_is_served_by_the_next(live: Emulator) -> None:
    env = {**live.environment(), "FLASHSNAP_HTTP_STATELESS": "1"}
    with anyio.fail_after(60):
        async with replicas([env] * 2) as urls:
            with Balancer(urls) as balancer:
                async with Client(f"{balancer.url}/mcp", mode="legacy") as client:
                    opened_on = dict(balancer.served)
                    saved = await save(client, 1)
                    found = data(await client.call_tool("get_snapshot", {"id": saved["id"]}))
                    assert found["name"] == "note 1"
                # initialize went to one replica, and the session's later requests to both
                assert len(opened_on) >= 1
                assert all(balancer.served[url] >= 2 for url in urls)


def test_an_unreachable_redis_stops_the_start_naming_the_host_not_the_password() -> None:
    port = free_port()
    env = params(env={"FLASHSNAP_REDIS_URL": f"redis://app:pa55-w0rd-xyz@127.0.0.1:{port}/0"}).env
    done = subprocess.run(
        [COMMAND, "--sandbox"], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr
    assert "pa55-w0rd-xyz" not in done.stderr + done.stdout
    assert done.stdout == ""


async def test_a_stdio_client_works_when_the_state_directory_is_unusable(tmp_path: Path, live: Emulator) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    stderr = tmp_path / "stderr.txt"
    env = {**live.environment(), "FLASHSNAP_STATE_DIR": str(blocker / "state")}
    with stderr.open("w") as errlog, anyio.fail_after(60):
        async with Client(stdio_client(params(env=env), errlog=errlog)) as client:
            data(await client.call_tool("check_quota", {}))
            await save(client, 1)
    warnings = [line for line in stderr.read_text().splitlines() if "FLASHSNAP_STATE_DIR" in line]
    assert len(warnings) == 1, stderr.read_text()
    assert "WARNING" in warnings[0]


MEMORY_WORKERS = [
    (["--workers", "2"], {}),
    ([], {"FLASHSNAP_WORKERS": "2"}),
    (["--workers", "64"], {}),
]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize(("args", "env"), MEMORY_WORKERS, ids=["flag", "variable", "many"])
def test_memory_state_with_several_workers_refuses_to_start_naming_the_fix(
    transport: str, args: list[str], env: dict[str, str]
) -> None:
    """Each worker would keep its own token, budget and used answers: one yes replayed was spent once per worker."""
    environ = params(env={"FLASHSNAP_STATE": "memory", "FLASHSNAP_TRANSPORT": transport, **env}).env
    done = subprocess.run(
        [COMMAND, *args], env=environ, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 2, done.stderr
    assert "FLASHSNAP_STATE=memory cannot serve" in done.stderr
    assert "FLASHSNAP_STATE=redis" in done.stderr
    assert "FLASHSNAP_WORKERS=1" in done.stderr
    assert done.stdout == ""


PASSWORD = "vk-" + "p4ss-w0rd-for-tests"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[Valkey, int, Path]]:
    """A Valkey that wants a password, and a TLS front for it: (server, TLS port, CA certificate)."""
    ca, cert, key = certificate_authority(tmp_path)
    with valkey(tmp_path, password=PASSWORD) as server, tls_terminator(server.port, cert, key) as tls_port:
        yield server, tls_port, ca


GOOD_URLS = {
    "redis:// with the password": lambda port, tls, ca: f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
    "rediss:// with the password and the CA": lambda port, tls, ca: (
        f"rediss://:{PASSWORD}@127.0.0.1:{tls}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    ),
    "rediss:// with a user": lambda port, tls, ca: f"rediss://default:{PASSWORD}@127.0.0.1:{tls}/0?ssl_ca_certs={ca}",
}


@pytest.mark.parametrize("form", GOOD_URLS)
async def test_a_valkey_with_a_password_and_tls_serves_the_replicas(
    connect: Connect, emulator: Emulator, guarded: tuple[Valkey, int, Path], form: str
) -> None:
    """deploy/compose.yaml gives Valkey a password; a managed Redis wants TLS (rediss://) with its parameters."""
    server, tls_port, ca = guarded
    url = GOOD_URLS[form](server.port, tls_port, ca)
    with anyio.fail_after(30):
        async with connect(env={"FLASHSNAP_REDIS_URL": url}) as client:
            data(await client.call_tool("check_quota", {}))
    assert emulator.state.count("token") == 1
    kept = redis.Redis(port=server.port, password=PASSWORD)
    try:
        assert kept.keys("flashsnap:*")  # the state went to this Valkey
    finally:
        kept.close()


BAD_URLS = {
    "no password": lambda port, tls, ca: f"redis://127.0.0.1:{port}/0",
    "a wrong password": lambda port, tls, ca: f"redis://:not-{PASSWORD}@127.0.0.1:{port}/0",
    "rediss:// to a CA it does not trust": lambda port, tls, ca: f"rediss://:{PASSWORD}@127.0.0.1:{tls}/0",
    "redis:// to the TLS port": lambda port, tls, ca: f"redis://:{PASSWORD}@127.0.0.1:{tls}/0",
}


@pytest.mark.parametrize("form", BAD_URLS)
def test_a_valkey_that_refuses_the_server_stops_the_start_naming_the_host_not_the_password(
    guarded: tuple[Valkey, int, Path], form: str
) -> None:
    server, tls_port, ca = guarded
    url = BAD_URLS[form](server.port, tls_port, ca)
    env = params(env={"FLASHSNAP_REDIS_URL": url}).env
    done = subprocess.run([COMMAND], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "127.0.0.1:" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert done.stdout == ""


async def test_workers_share_the_store_and_serve_calls(live: Emulator) -> None:
    with anyio.fail_after(90):
        async with http_replica({**live.environment(), "FLASHSNAP_HTTP_TOKEN": TOKEN}, "--workers", "2") as url:
            auth = {"Authorization": f"Bearer {TOKEN}"}  # /healthz names the store only to the token's holder
            async with httpx2.AsyncClient(headers=auth) as http:
                health = (await http.get(f"{url}/healthz")).json()
            assert health["stateless"] is True
            assert health["state"]["store"] == "sqlite"
            for n in range(4):  # new connections: the kernel spreads them over the workers
                mcp = streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(headers=auth))
                async with Client(mcp) as client:
                    data(await client.call_tool("check_quota", {}))
                    await save(client, n)
    assert live.state.count("token") == 1


async def test_losing_redis_mid_run_degrades_to_local_state_and_comes_back(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {**emulator.environment(), "FLASHSNAP_REDIS_URL": redis_server.url, "FLASHSNAP_HTTP_TOKEN": TOKEN}
    app = build_http_app(Settings.from_env(environ, transport="streamable-http"), clock=clock)
    auth = {"Authorization": f"Bearer {TOKEN}"}  # /healthz names the store only to the token's holder
    with LoopbackServer(app, lifespan="on") as server, anyio.fail_after(60):
        mcp = streamable_http_client(f"{server.url}/mcp", http_client=httpx2.AsyncClient(headers=auth))
        async with httpx2.AsyncClient(base_url=server.url, headers=auth) as http, Client(mcp) as client:
            await save(client, 1)
            assert (await http.get("/healthz")).json()["status"] == "ok"

            redis_server.stop()
            for n in range(2, 5):
                await save(client, n)  # calls go on, on this process's own state
            health = (await http.get("/healthz")).json()
            assert health["status"] == "degraded"
            assert health["state"]["reachable"] is False
            assert health["state"]["where"] == redis_server.url

            redis_server.start()
            clock.advance(6)  # past the retry interval: the next call tries the shared store again
            await save(client, 5)
            assert (await http.get("/healthz")).json()["status"] == "ok"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "shared state" in r.getMessage()]
    assert len(warnings) == 2, warnings  # one when lost, one when back; none per call
    assert "unavailable" in warnings[0]
    assert "back" in warnings[1]
    assert emulator.state.count("snapshot_create") == 5
