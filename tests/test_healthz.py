"""/healthz tells anyone only that the server is alive; where its state lives is for the token's holder.

Issue 31, row 15: `/healthz` without a token named the state file's path or the Redis host. Each store kind, each
way of asking without the token, against a real uvicorn server on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.servers import valkey

TOKEN = "healthz-access-token-0123456789"
STORES = ["memory", "sqlite", "redis"]
DETAILS = {"version", "transport", "stateless", "sandbox", "neuroflash", "neuralsnap", "state"}


@pytest.fixture
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    kind = request.param
    if kind == "redis":
        with valkey(tmp_path) as server:
            yield {"FLASHSNAP_REDIS_URL": server.url}
    elif kind == "sqlite":
        yield {"FLASHSNAP_STATE": "sqlite", "FLASHSNAP_STATE_DIR": str(tmp_path / "secret-place")}
    else:
        yield {"FLASHSNAP_STATE": "memory"}


def where(env: dict[str, str]) -> list[str]:
    """What the open answer must not name: the state directory, the Redis host and port."""
    if "FLASHSNAP_REDIS_URL" in env:
        return [env["FLASHSNAP_REDIS_URL"].split("//")[1].split("/")[0]]
    return [env["FLASHSNAP_STATE_DIR"]] if "FLASHSNAP_STATE_DIR" in env else []


def healthz(
    emulator: Emulator, clock: FakeClock, env: dict[str, str], headers: dict[str, str], **kw: Any
) -> httpx2.Response:
    settings = Settings.from_env({**emulator.environment(), **env}, transport="streamable-http", **kw)
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
        return httpx2.get(f"{server.url}/healthz", headers=headers)


ASKING_WITHOUT = {
    "no token configured": ({}, None),
    "no Authorization header": ({}, TOKEN),
    "a wrong token": ({"Authorization": "Bearer wrong-token-0123456789"}, TOKEN),
    "another scheme": ({"Authorization": f"Basic {TOKEN}"}, TOKEN),
}


@pytest.mark.parametrize("store_env", STORES, indirect=True)
@pytest.mark.parametrize("asking", list(ASKING_WITHOUT))
def test_without_the_token_healthz_says_only_whether_the_server_is_alive(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, store_env: dict[str, str], asking: str
) -> None:
    headers, token = ASKING_WITHOUT[asking]
    response = healthz(emulator, clock, store_env, headers, http_token=token)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    for named in where(store_env):
        assert named not in response.text
    assert sum(state.requests.values()) == 0


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_with_the_token_healthz_gives_the_details(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, store_env: dict[str, str]
) -> None:
    response = healthz(emulator, clock, store_env, {"Authorization": f"Bearer {TOKEN}"}, http_token=TOKEN)
    body = response.json()
    assert body["status"] == "ok"
    assert set(body) == {"status", *DETAILS}
    assert body["neuroflash"] is True
    assert body["state"]["store"] == ("redis" if "FLASHSNAP_REDIS_URL" in store_env else store_env["FLASHSNAP_STATE"])
    assert TOKEN not in response.text
    assert sum(state.requests.values()) == 0
