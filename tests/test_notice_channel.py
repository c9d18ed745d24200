"""The replicas' notice channel on Redis (a real valkey-server): replicas tell each other's sessions and listeners
of a change; with Redis gone a change is still made and told on the replica that made it, and heard again once
Redis is back; anything else on the channel (garbage, hostile messages, kinds this server never sends, another
prefix's notices) is skipped; the Redis password never reaches a log."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from mcp.client.subscriptions import ResourcesListChanged

from server.clock import FakeClock
from server.sandbox import Emulator
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.results import data
from tests.servers import Valkey, http_replica, valkey
from tests.test_notifications import THOUGHT, Heard, StandaloneStream, http_session, snapshot_uris
from tests.transports import settings

ELSEWHERE = json.dumps({"origin": "another-replica", "kind": "resources_list_changed"})


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Valkey]:
    with valkey(tmp_path) as server:
        yield server


def publish(server: Valkey, *messages: str | bytes, channel: str = "flashsnap:events") -> None:
    """Messages on the replicas' channel, as another replica (or anything else with access to Redis) sends them."""
    with redis.Redis(port=server.port) as raw:
        for message in messages:
            raw.publish(channel, message)


@asynccontextmanager
async def replica_listener(emulator: Emulator, clock: FakeClock, server: Valkey) -> AsyncIterator[Any]:
    """A 2026-07-28 listener on an in-process replica that hears the others through `server`."""
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", redis_url=server.url)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as replica:
        async with http_session(replica.url, "auto") as client, client.listen(resources_list_changed=True) as told:
            yield told


def subscribers(server: Valkey) -> int:
    with redis.Redis(port=server.port) as raw:
        return int(dict(raw.pubsub_numsub("flashsnap:events")).get(b"flashsnap:events", 0))


# --- replicas tell each other --------------------------------------------------------------------------------


async def test_replicas_on_one_redis_tell_each_others_sessions_and_listeners(live: Emulator, tmp_path: Path) -> None:
    heard, stream = Heard(), StandaloneStream()
    with valkey(tmp_path) as redis_server, anyio.fail_after(120):
        # Stateful sessions, as behind a balancer with sticky sessions (with Redis the default is stateless,
        # where a 2025-11-25 client has no session to be told on: only its own call's stream).
        env = {**live.environment(), "FLASHSNAP_REDIS_URL": redis_server.url, "FLASHSNAP_TOOLSETS": "all",
               "FLASHSNAP_HTTP_STATELESS": "0"}  # fmt: skip
        async with (
            http_replica(env) as a,
            http_replica(env) as b,
            http_session(b, "legacy", heard, stream) as reader,
            http_session(b, "auto") as modern,
            modern.listen(resources_list_changed=True) as listening,
            http_session(a, "legacy") as writer,
        ):
            await stream.wait()
            assert snapshot_uris(await reader.list_resources()) == set()  # the listing is cached, in Redis
            saved = data(await writer.call_tool("snapshot", THOUGHT))
            assert isinstance(await anext(listening), ResourcesListChanged)
            await heard.until(1)
            assert snapshot_uris(await reader.list_resources()) == {f"neuralsnap://snapshots/{saved['id']}"}


@pytest.mark.parametrize(
    "flags",
    [pytest.param((), id="default-toolsets"), pytest.param(("--toolsets", "all", "--read-only"), id="read-only")],
)
async def test_a_replica_that_claims_no_list_changed_sends_none_heard_from_elsewhere(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey, flags: tuple[str, ...]
) -> None:
    heard, stream = Heard(), StandaloneStream()
    chosen = settings(emulator, *flags, transport="streamable-http", redis_url=redis_server.url, http_stateless=False)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as replica, anyio.fail_after(5):
        async with (
            http_session(replica.url, "legacy", heard, stream) as legacy,
            http_session(replica.url, "auto") as modern,
            modern.listen(resources_list_changed=True) as listening,
        ):
            claimed = []
            for client in (legacy, modern):
                assert client.server_capabilities.resources is not None
                claimed.append(bool(client.server_capabilities.resources.list_changed))
            await stream.wait()
            publish(redis_server, ELSEWHERE)  # a replica with the listing on changed it
            events = []
            with anyio.move_on_after(1):
                events.append(await anext(listening))
            await legacy.list_prompts()
            # Whatever it is told of, each client was told it would be (else: told of nothing it was promised).
            assert (heard.count > 0, bool(events)) in ((False, False), (claimed[0], claimed[1])), claimed


# --- Redis gone and back -------------------------------------------------------------------------------------


async def test_with_redis_gone_a_change_is_still_made_and_told_on_this_replica(
    emulator: Emulator, clock: FakeClock, tmp_path: Path
) -> None:
    with valkey(tmp_path) as redis_server:
        chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", redis_url=redis_server.url)
        with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as server, anyio.fail_after(60):
            async with http_session(server.url, "auto") as client, client.listen(resources_list_changed=True) as told:
                redis_server.stop()
                data(await client.call_tool("snapshot", THOUGHT))
                assert isinstance(await anext(told), ResourcesListChanged)


async def test_a_replica_hears_again_once_redis_is_back(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey
) -> None:
    with anyio.fail_after(8):
        async with replica_listener(emulator, clock, redis_server) as told:
            redis_server.stop()
            redis_server.start()  # same port, no memory of the subscription
            while subscribers(redis_server) == 0:  # noqa: ASYNC110 - the replica subscribes again after its backoff
                await anyio.sleep(0.02)
            publish(redis_server, ELSEWHERE)
            assert isinstance(await anext(told), ResourcesListChanged)


async def test_the_redis_password_never_reaches_the_logs(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sup3r-s3cret-pw"
    url = redis_server.url.replace("redis://", f"redis://default:{secret}@")  # a server that takes no password
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", redis_url=url, http_stateless=False)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as replica, anyio.fail_after(5):
        async with http_session(replica.url, "legacy") as client:
            data(await client.call_tool("snapshot", THOUGHT))  # publishes: refused by Redis
            redis_server.stop()
            data(await client.call_tool("snapshot", {**THOUGHT, "name": "Redis gone"}))
    assert caplog.records
    assert secret not in caplog.text


# --- what else is on the channel -----------------------------------------------------------------------------


async def test_garbage_on_the_channel_is_skipped_and_the_next_notice_heard(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey
) -> None:
    with anyio.fail_after(5):
        async with replica_listener(emulator, clock, redis_server) as told:
            huge = json.dumps({"origin": "x", "kind": "resources_list_changed", "pad": "x" * 1_000_000})[:-3]
            garbage = ["not json", "[]", "null", "42", '"origin"', '{"origin": "x"}', '{"origin": "x", "kind": []}',
                       '{"origin": "x", "kind": "nonsense"}', '{"kind": "resources_list_changed"}', huge]  # fmt: skip
            publish(redis_server, ELSEWHERE, channel="another-tenant:events")  # another prefix: not ours to hear
            publish(redis_server, *garbage, ELSEWHERE)
            assert isinstance(await anext(told), ResourcesListChanged)


@pytest.mark.parametrize(
    "garbage",
    [pytest.param("[" * 100_000, id="deeply-nested-json"), pytest.param(b"\xff\xfe{", id="not-utf8")],
)
async def test_a_hostile_message_on_the_channel_does_not_deafen_the_replica(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey, garbage: str | bytes
) -> None:
    with anyio.fail_after(5):
        async with replica_listener(emulator, clock, redis_server) as told:
            publish(redis_server, garbage, ELSEWHERE)  # the notice right behind it must still be heard
            with anyio.move_on_after(1):
                assert isinstance(await anext(told), ResourcesListChanged)
                return
            pytest.fail("the notice behind a hostile message on the channel was lost")


async def test_kinds_this_server_never_sends_are_not_relayed_from_the_channel(
    emulator: Emulator, clock: FakeClock, redis_server: Valkey
) -> None:
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", redis_url=redis_server.url)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as replica, anyio.fail_after(5):
        async with (
            http_session(replica.url, "auto") as client,
            client.listen(
                tools_list_changed=True,
                prompts_list_changed=True,
                resources_list_changed=True,
                resource_subscriptions=["neuralsnap://snapshots/x"],
            ) as told,
        ):
            foreign = [{"kind": "tools_list_changed"}, {"kind": "prompts_list_changed"},
                       {"kind": "resource_updated", "uri": "neuralsnap://snapshots/x"}]  # fmt: skip
            publish(redis_server, *(json.dumps({"origin": "x", **event}) for event in foreign), ELSEWHERE)
            # The capabilities say tools and prompts never change and no resource update is sent: so it must be.
            first = await anext(told)
            assert isinstance(first, ResourcesListChanged), (first, told.honored)
