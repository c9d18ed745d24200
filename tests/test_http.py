"""The HTTP transports against a real uvicorn server on loopback: every tool, many sessions, the security model."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import MODES
from tests.results import data
from tests.walkthrough import walk_every_tool

TOKEN = "test-access-token-0123456789"
ServeHTTP = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def serve_http(emulator: Emulator, clock: FakeClock) -> ServeHTTP:
    """`async with serve_http(transport, **settings) as url`: flashsnap-mcp over HTTP on a loopback port."""

    @asynccontextmanager
    async def serve(transport: str = "streamable-http", **overrides: Any) -> AsyncIterator[str]:
        settings = Settings.from_env(emulator.environment(), transport=transport, **overrides)
        with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
            yield server.url

    return serve


def connect(url: str, transport: str, mode: str, token: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    if transport == "sse":
        return Client(sse_client(f"{url}/sse", headers=headers), mode=mode)
    http = httpx2.AsyncClient(headers=headers, timeout=30) if headers else None
    from mcp.client.streamable_http import streamable_http_client

    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_works_over_http(serve_http: ServeHTTP, transport: str, mode: str) -> None:
    async with serve_http(transport, toolsets=("all",)) as url, connect(url, transport, mode) as client:
        with anyio.fail_after(30):
            await walk_every_tool(client, f"Over {transport}")


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_twenty_sessions_share_one_token_and_one_rate_limit(
    serve_http: ServeHTTP, state: EmulatorState, transport: str
) -> None:
    state.set_rate_limit(50, 60)
    answered: list[bool] = []

    async def session(n: int) -> None:
        async with connect(url, transport, "legacy") as client:
            for i in range(10):
                tool, args = (
                    ("check_quota", {})
                    if i % 2
                    else ("snapshot", {"name": f"s{n}-{i}", "core": "c", "max_wait_s": 300})
                )
                answered.append(not (await client.call_tool(tool, args)).is_error)

    async with serve_http(transport) as url:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(session, n)
    assert answered == [True] * 200
    assert state.count("token") == 1
    assert state.count_status("snapshot_create", 429) == 0
    assert len(state.snapshots) == 100
    windows = {math.floor(r.at / 60) for r in state.log if r.route == "snapshot_create"}
    assert len(windows) == 2  # two windows of 50: every request of the budget used


async def test_a_foreign_origin_is_refused(serve_http: ServeHTTP, state: EmulatorState) -> None:
    async with serve_http() as url, httpx2.AsyncClient() as http:
        evil = await http.post(f"{url}/mcp", headers={"Origin": "https://evil.example"}, json={})
        rebound = await http.post(f"{url}/mcp", headers={"Host": "evil.example"}, json={})
        local = await http.get(f"{url}/healthz", headers={"Origin": "http://localhost:3000"})
    assert evil.status_code == 403
    assert rebound.status_code == 421
    assert local.status_code == 200
    assert sum(state.requests.values()) == 0


async def test_healthz_answers_without_credentials_or_upstream_calls(
    serve_http: ServeHTTP, state: EmulatorState
) -> None:
    async with serve_http(http_token=TOKEN) as url, httpx2.AsyncClient() as http:
        response = await http.get(f"{url}/healthz")
        detailed = await http.get(f"{url}/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}  # the details are for the token's holder (tests/test_healthz.py)
    body = detailed.json()
    assert body["status"] == "ok"
    assert body["neuroflash"] is True
    assert TOKEN not in response.text
    assert sum(state.requests.values()) == 0


@pytest.mark.parametrize("given", [None, "wrong-token-0123456789"])
async def test_a_missing_or_wrong_token_gets_401(serve_http: ServeHTTP, given: str | None) -> None:
    headers = {"Authorization": f"Bearer {given}"} if given else {}
    async with serve_http(http_token=TOKEN) as url, httpx2.AsyncClient() as http:
        response = await http.post(f"{url}/mcp", headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_right_token_lets_a_client_in(serve_http: ServeHTTP) -> None:
    async with serve_http(http_token=TOKEN) as url, connect(url, "streamable-http", "auto", token=TOKEN) as client:
        data(await client.call_tool("list_workspaces", {}))


async def test_an_oversized_body_is_refused(serve_http: ServeHTTP, state: EmulatorState) -> None:
    async with serve_http(max_body_bytes=2048) as url, httpx2.AsyncClient() as http:
        response = await http.post(f"{url}/mcp", content=b"x" * 10_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_reverse_proxy_setup_without_a_token_refuses_to_start(emulator: Emulator) -> None:
    from server.errors import ConfigurationError

    proxied = {"transport": "streamable-http", "allowed_hosts": "mcp.example.com"}
    with pytest.raises(ConfigurationError, match="FLASHSNAP_HTTP_TOKEN"):
        build_http_app(Settings.from_env(emulator.environment(), **proxied))


async def test_a_websocket_is_refused(serve_http: ServeHTTP) -> None:
    async with serve_http() as url, httpx2.AsyncClient() as http:
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
        response = await http.get(f"{url}/mcp", headers=upgrade)
    assert response.status_code != 101


def test_a_non_loopback_bind_without_a_token_refuses_to_start(emulator: Emulator) -> None:
    from server.errors import ConfigurationError

    everywhere: dict[str, Any] = {"transport": "streamable-http", "host": "0.0.0.0"}  # noqa: S104
    with pytest.raises(ConfigurationError, match="FLASHSNAP_HTTP_TOKEN"):
        build_http_app(Settings.from_env(emulator.environment(), **everywhere))
    assert build_http_app(Settings.from_env(emulator.environment(), **everywhere, http_token=TOKEN)) is not None
