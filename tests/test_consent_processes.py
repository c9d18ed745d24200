"""Asking first where users run processes: a stdio subprocess, and replicas behind a balancer."""

from __future__ import annotations

import contextlib

import anyio
import pytest
from mcp import Client

from server.sandbox import Emulator
from tests.conftest import MODES
from tests.results import data, error
from tests.servers import Balancer, http_replica
from tests.test_consent import DELETE, SNAPSHOT, User
from tests.test_stdio import params

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_over_stdio_yes_deletes_once_no_sends_nothing_and_unasked_clients_confirm(
    live: Emulator, mode: str
) -> None:
    env = {**live.environment(), "FLASHSNAP_TOOLSETS": "all"}
    with anyio.fail_after(60):
        for action, deletes in (("decline", 0), ("accept", 1)):
            user = User(action)
            async with Client(params(env=env), mode=mode, elicitation_callback=user) as client:
                snapshot_id = data(await client.call_tool("snapshot", SNAPSHOT))["id"]
                result = await client.call_tool("delete_snapshot", {"id": snapshot_id})
                assert (error(result)["code"] == "declined") if action == "decline" else data(result)["deleted"]
            assert len(user.asked) == 1
            assert live.state.count(DELETE) == deletes
        async with Client(params(env=env), mode=mode) as unasked:
            snapshot_id = data(await unasked.call_tool("snapshot", SNAPSHOT))["id"]
            assert error(await unasked.call_tool("delete_snapshot", {"id": snapshot_id}))["code"] == (
                "confirmation_required"
            )
            assert live.state.count(DELETE) == 1
            assert data(await unasked.call_tool("delete_snapshot", {"id": snapshot_id, "confirm": True}))["deleted"]
    assert live.state.count(DELETE) == 2


async def test_the_answer_may_reach_another_replica_than_the_question(live: Emulator) -> None:
    """A 2026-07-28 client's second round goes to the other replica: it opens the state the first one sealed
    (the key both derive from the same credentials) and the yes deletes once."""
    env = {**live.environment(), "FLASHSNAP_TOOLSETS": "all", "FLASHSNAP_HTTP_STATELESS": "1"}
    user = User("accept")
    with anyio.fail_after(90):
        async with contextlib.AsyncExitStack() as stack:
            urls = [await stack.enter_async_context(http_replica(env)) for _ in range(2)]
            with Balancer(urls) as balancer:
                async with Client(f"{balancer.url}/mcp", elicitation_callback=user) as client:
                    snapshot_id = data(await client.call_tool("snapshot", SNAPSHOT))["id"]
                    before = dict(balancer.served)
                    assert data(await client.call_tool("delete_snapshot", {"id": snapshot_id}))["deleted"]
                    during = {url: balancer.served[url] - before.get(url, 0) for url in urls}
    assert len(user.asked) == 1
    assert all(n >= 1 for n in during.values()), during  # the question and the answer, one replica each
    assert live.state.count(DELETE) == 1
