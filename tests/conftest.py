"""Shared fixtures: a fresh emulator on loopback per test, a fake clock, and real MCP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.app import create_app
from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState

MODES = ["auto", "legacy"]  # discovery of the modern protocol, and the handshake desktop clients speak

Connect = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own user cache directory, so the default SQLite state never leaks between tests
    (subprocesses inherit it through the environment)."""
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "flashsnap-mcp"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> EmulatorState:
    return EmulatorState(clock)


@pytest.fixture
def emulator(state: EmulatorState) -> Iterator[Emulator]:
    with Emulator(state) as emulator:
        yield emulator


@pytest.fixture
def connect(emulator: Emulator, clock: FakeClock) -> Connect:
    """`async with connect(mode=..., env={...}) as client`: an in-memory MCP client of a fresh server."""

    @asynccontextmanager
    async def open_client(
        *, mode: str = "auto", env: dict[str, str] | None = None, drop: tuple[str, ...] = (), **kw: Any
    ) -> AsyncIterator[Client]:
        environ = {k: v for k, v in {**emulator.environment(), **(env or {})}.items() if k not in drop}
        app = create_app(Settings.from_env(environ, **kw), clock=clock)
        async with Client(app, mode=mode) as client:
            yield client

    return open_client


@pytest.fixture(params=MODES)
async def client(request: pytest.FixtureRequest, connect: Connect) -> AsyncIterator[Client]:
    async with connect(mode=request.param) as client:
        yield client
