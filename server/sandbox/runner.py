"""The emulator as one app (both upstreams and the identity service), and its demo seed."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from server.sandbox import catalog, neuralsnap_app, neuroflash_app
from server.sandbox.loopback import LoopbackServer
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
                "snapshots": state.snapshot_count(),
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
    """The demo world: a business workspace with room to write, and a free one whose quota is spent.

    The free one has spent its month as well as its day, so it stays spent in a world file that
    outlives the day (the emulator resets daily counts, like upstream, and monthly ones never).
    """
    state.add_workspace(
        catalog.SIDE_PROJECT_WORKSPACE, "Side Project", plan="free", monthly=10_000, daily=2_000,
        used=10_000, used_daily=2_000,
    )  # fmt: skip
    state.latency_s["chat_chunk"] = 0.03  # text arrives over time, as from a real model
    return state


class Emulator(LoopbackServer):
    """A running emulator: `with Emulator() as emu:` then point clients at `emu.environment()`."""

    def __init__(self, state: EmulatorState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state or EmulatorState()
        super().__init__(build_app(self.state), host=host, port=port)

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


def emulator_environment(emulator: Emulator) -> dict[str, str]:
    """What `--sandbox` runs with: the emulator's variables, and the business workspace as default."""
    return {**emulator.environment(), "NEUROFLASH_WORKSPACE_ID": catalog.MARKETING_WORKSPACE}
