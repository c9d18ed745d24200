"""Serves the emulator with uvicorn on a loopback port, in a thread of its own."""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from server.sandbox import catalog, neuralsnap_app, neuroflash_app
from server.sandbox.state import EmulatorState

TOKEN_PREFIX = "/id"
NEUROFLASH_PREFIX = "/neuroflash"
NEURALSNAP_PREFIX = "/neuralsnap/api/v1"


def build_app(state: EmulatorState) -> Starlette:
    """Both upstreams (and the identity service) under one origin, each at its own base path."""

    async def stats(request: Request) -> JSONResponse:
        with state.lock:
            body = {
                "requests": dict(state.requests),
                "responses": {f"{route} {status}": n for (route, status), n in state.responses.items()},
                "words_charged": state.words_charged,
                "snapshots": len(state.snapshots),
            }
        return JSONResponse(body)

    return Starlette(
        routes=[
            Route("/_emulator/stats", stats),
            Mount(TOKEN_PREFIX, neuroflash_app.build_token_app(state)),
            Mount(NEUROFLASH_PREFIX, neuroflash_app.build_api_app(state)),
            Mount(NEURALSNAP_PREFIX, neuralsnap_app.build_app(state)),
        ]
    )


def seed_sandbox(state: EmulatorState) -> EmulatorState:
    """The demo world: a business workspace with room to write, and a free one whose day is spent."""
    state.add_workspace(catalog.SIDE_PROJECT_WORKSPACE, "Side Project", plan="free", monthly=10_000, daily=2_000)
    state.set_quota(catalog.SIDE_PROJECT_WORKSPACE, used=2_000, used_daily=2_000)
    state.latency_s["chat_chunk"] = 0.03  # text arrives over time, as from a real model
    return state


class Emulator:
    """A running emulator: `with Emulator() as emu:` then point clients at `emu.environment()`."""

    def __init__(self, state: EmulatorState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state or EmulatorState()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        # log_config=None: uvicorn must never set up a handler on stdout (stdio mode owns it).
        config = uvicorn.Config(
            build_app(self.state),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="flashsnap-emulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """The variables that point flashsnap-mcp at this emulator, with the demo credentials."""
        return {
            "NEUROFLASH_CLIENT_ID": catalog.DEMO_CLIENT_ID,
            "NEUROFLASH_CLIENT_SECRET": catalog.DEMO_CLIENT_SECRET,
            "NEUROFLASH_TOKEN_URL": f"{self.url}{TOKEN_PREFIX}/oauth/v2/token",
            "NEUROFLASH_API_URL": f"{self.url}{NEUROFLASH_PREFIX}",
            "NEURALSNAP_API_KEY": catalog.DEMO_API_KEY,
            "NEURALSNAP_API_URL": f"{self.url}{NEURALSNAP_PREFIX}",
        }

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> Emulator:
        self._socket.listen(128)  # connections queue in the backlog until uvicorn accepts them
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
