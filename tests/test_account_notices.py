"""Change notices stay within an account: a snapshot saved on one account's brain tells that account's sessions and
listeners that the listing changed, and nobody on another account (whose listing did not change), in this process
and across replicas on one Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.subscriptions import ResourcesListChanged

from server.clock import FakeClock
from server.sandbox import Emulator
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.results import data
from tests.servers import Valkey, valkey
from tests.test_accounts import SNAP, Serve, serve, team_file  # noqa: F401  (fixtures)
from tests.test_notice_channel import publish
from tests.test_notifications import Heard, StandaloneStream
from tests.test_team import TOKENS
from tests.transports import http_client, settings


@asynccontextmanager
async def session_as(
    url: str, name: str, mode: str, heard: Heard | None = None, stream: StandaloneStream | None = None
) -> AsyncIterator[Client]:
    """A session of principal `name` (its bearer token), counting the notices it is handed."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {TOKENS[name]}"},
        timeout=30,
        event_hooks={"response": [stream] if stream else []},
    )
    async with http_client(url, mode, heard, http) as client:
        yield client


async def test_a_stateful_session_hears_only_its_own_accounts_changes(serve: Serve) -> None:  # noqa: F811
    carols, marketing = Heard(), Heard()  # carol: the default account; alice: marketing
    carols_stream, marketing_stream = StandaloneStream(), StandaloneStream()
    with anyio.fail_after(60):
        async with (
            serve(http_stateless=False) as url,
            session_as(url, "carol", "legacy", carols, carols_stream) as carol,
            session_as(url, "alice", "legacy", marketing, marketing_stream),
            session_as(url, "alice", "legacy") as alice,
        ):
            await carols_stream.wait()
            await marketing_stream.wait()
            data(await alice.call_tool("snapshot", SNAP))
            await marketing.until(1)  # alice's other session, on her account, is told on its GET stream
            data(await carol.call_tool("snapshot", SNAP))
            # Told once, of her own change on her call's stream: alice's change was on another brain.
            assert carols.count == 1


async def test_a_listener_hears_only_its_own_accounts_changes(serve: Serve) -> None:  # noqa: F811
    carols = Heard()
    with anyio.fail_after(60):
        async with (
            serve() as url,
            session_as(url, "carol", "auto", carols) as carol_listening,
            carol_listening.listen(resources_list_changed=True) as carols_events,
            session_as(url, "alice", "auto") as alice_listening,
            alice_listening.listen(resources_list_changed=True) as alices_events,
            session_as(url, "alice", "auto") as alice,
            session_as(url, "carol", "auto") as carol,
        ):
            data(await alice.call_tool("snapshot", SNAP))
            assert isinstance(await anext(alices_events), ResourcesListChanged)
            await carol_listening.list_prompts()  # a round trip after alice's listener was told
            assert carols.count == 0  # the SDK hands listen events to the message handler too
            data(await carol.call_tool("snapshot", SNAP))
            assert isinstance(await anext(carols_events), ResourcesListChanged)
            assert carols.count == 1


def elsewhere(**fields: object) -> str:
    return json.dumps({"origin": "another-replica", "kind": "resources_list_changed", **fields})


@pytest.mark.parametrize(
    ("message", "told"),
    [
        pytest.param(elsewhere(account="marketing"), False, id="another-account"),
        pytest.param(elsewhere(account=""), True, id="the-default-account"),
        pytest.param(elsewhere(), True, id="no-account: an older replica, everyone"),
        pytest.param(elsewhere(account=None), True, id="null-account: as none"),
        pytest.param(elsewhere(account=5), False, id="not-a-name: skipped"),
        pytest.param(elsewhere(account=["marketing"]), False, id="a-list: skipped"),
        pytest.param(elsewhere(account="x" * 129), False, id="too-long: skipped"),
    ],
)
async def test_a_change_from_another_replica_reaches_only_its_account(
    emulator: Emulator, clock: FakeClock, tmp_path: Path, message: str, told: bool
) -> None:
    heard, stream = Heard(), StandaloneStream()
    with valkey(tmp_path) as redis_server:
        await _heard_from_channel(emulator, clock, redis_server, message, heard, stream)
    assert heard.count == (2 if told else 1)


async def _heard_from_channel(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey, message: str, heard: Heard, stream: StandaloneStream
) -> None:
    """A stateful session on the default account, told of `message` and then of a default-account change."""
    chosen = settings(
        emulator, "--toolsets", "all", transport="streamable-http", redis_url=redis_server.url, http_stateless=False
    )
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as replica, anyio.fail_after(10):
        async with session_as(replica.url, "carol", "legacy", heard, stream) as session:
            await stream.wait()
            publish(redis_server, message, elsewhere(account=""))  # in order, on one channel
            await heard.until(1)
            await session.list_prompts()  # a round trip after the first notice
            await session.list_prompts()
