"""Shared fixtures: a fresh emulator on loopback per test, a fake clock, and real MCP clients."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ElicitationFnT

from server.app import create_app
from server.clock import FakeClock, SystemClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from tests.authorization_server import AuthorizationServer, Served, serving

# The tests of other features run without the question before a large generate or crystallize, so each proves
# one thing; tests/test_consent.py proves the default (1,000 words) and every way of asking.
NO_QUESTIONS = {"FLASHSNAP_CONFIRM_WORDS": "0"}

MODES = ["auto", "legacy"]  # discovery of the modern protocol, and the handshake desktop clients speak

Connect = Callable[..., AbstractAsyncContextManager[Client]]

ALL_TOOLSETS = {"FLASHSNAP_TOOLSETS": "all"}


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


@pytest.fixture(autouse=True)
def no_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    """`NO_QUESTIONS` for servers that read the process environment (those run as subprocesses inherit it)."""
    for var, value in NO_QUESTIONS.items():
        monkeypatch.setenv(var, value)


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
def live() -> Iterator[Emulator]:
    """An emulator on the real clock: the servers here are other processes, which read the real time."""
    with Emulator(EmulatorState(SystemClock())) as emulator:
        yield emulator


def serve(state: EmulatorState, **variants: Any) -> None:
    """The emulator answers, from now on, as the upstream's variant `variants` describes."""
    state.variants = dataclasses.replace(state.variants, **variants)


def sent(state: EmulatorState, route: str) -> list[Any]:
    """The bodies the emulator received on `route`, oldest first."""
    return [body for name, body in state.received if name == route]


@pytest.fixture
def connect(emulator: Emulator, clock: FakeClock) -> Connect:
    """`async with connect(mode=..., env={...}) as client`: an in-memory MCP client of a fresh server."""

    @asynccontextmanager
    async def open_client(
        *,
        mode: str = "auto",
        env: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
        elicitation: ElicitationFnT | None = None,
        **kw: Any,
    ) -> AsyncIterator[Client]:
        environ = {k: v for k, v in {**NO_QUESTIONS, **emulator.environment(), **(env or {})}.items() if k not in drop}
        app = create_app(Settings.from_env(environ, **kw), clock=clock)
        async with Client(app, mode=mode, elicitation_callback=elicitation) as client:
            yield client

    return open_client


@pytest.fixture(params=MODES)
async def client(request: pytest.FixtureRequest, connect: Connect) -> AsyncIterator[Client]:
    async with connect(mode=request.param) as client:
        yield client


@pytest.fixture(params=MODES)
async def every(request: pytest.FixtureRequest, connect: Connect) -> AsyncIterator[Client]:
    """A client offered every toolset, in both protocol modes."""
    async with connect(mode=request.param, env=ALL_TOOLSETS) as client:
        yield client


@pytest.fixture(scope="session")
def authorization_server() -> Iterator[AuthorizationServer]:
    """One real OAuth 2.1 authorization server (oidc-provider) for the whole test session."""
    with AuthorizationServer() as server:
        yield server


@pytest.fixture
def served(authorization_server: AuthorizationServer) -> Iterator[Served]:
    """flashsnap-mcp in OAuth mode over Streamable HTTP, trusting the session's authorization server."""
    with serving(authorization_server) as served:
        yield served
