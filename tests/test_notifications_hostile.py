"""Hostile tests of change notices (issue 20): clients that misbehave, Redis that misbehaves, shutdown in flight."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
import redis
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.subscriptions import ResourcesListChanged
from mcp.types import InitializedNotification
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.app import create_app
from server.clock import FakeClock
from server.sandbox import Emulator
from server.sandbox.loopback import LoopbackServer
from server.transports import http as http_transport
from server.transports.http import build_http_app
from tests.results import data
from tests.servers import Valkey, valkey
from tests.test_notifications import THOUGHT, Heard, StandaloneStream, http_session, snapshot_uris
from tests.test_stdio import params
from tests.transports import settings


@asynccontextmanager
async def http_server(emulator: Emulator, clock: FakeClock, **overrides: Any) -> AsyncIterator[str]:
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", **overrides)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as server:
        yield server.url


async def test_a_session_that_repeats_initialized_hears_each_change_once(emulator: Emulator, clock: FakeClock) -> None:
    heard, stream = Heard(), StandaloneStream()
    with anyio.fail_after(10):
        async with (
            http_server(emulator, clock) as url,
            http_session(url, "legacy", heard, stream) as repeater,
            http_session(url, "legacy") as writer,
        ):
            await stream.wait()
            for _ in range(3):  # a buggy or hostile client re-sends the handshake's last step
                await repeater.session.send_notification(InitializedNotification())
            await repeater.list_prompts()  # the notifications were handled before this answer
            data(await writer.call_tool("snapshot", THOUGHT))
            await heard.until(1)
            data(await writer.call_tool("snapshot", {**THOUGHT, "name": "Second"}))
            await heard.until(2)
            await repeater.list_prompts()
            assert heard.count == 2  # one notice per change, not one per `initialized` the client sent


async def test_one_session_cannot_push_the_others_out_of_the_notice_registry(
    emulator: Emulator, clock: FakeClock
) -> None:
    victim, stream = Heard(), StandaloneStream()
    with anyio.fail_after(10):
        async with (
            http_server(emulator, clock, max_sessions=3) as url,
            http_session(url, "legacy", victim, stream) as listener,
            http_session(url, "legacy") as hostile,
            http_session(url, "legacy") as writer,
        ):
            await stream.wait()
            for _ in range(3):  # as many as the registry holds: each one pushed the oldest out
                await hostile.session.send_notification(InitializedNotification())
            await hostile.list_prompts()
            data(await writer.call_tool("snapshot", THOUGHT))
            # A live session of three, within max_sessions: it must still be told.
            with anyio.move_on_after(1):
                await victim.until(1)
            await listener.list_prompts()
            assert victim.count == 1


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


def subscribers(server: Valkey) -> int:
    with redis.Redis(port=server.port) as raw:
        return int(dict(raw.pubsub_numsub("flashsnap:events")).get(b"flashsnap:events", 0))


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


async def test_sessions_that_closed_are_forgotten(
    emulator: Emulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []

    def keep(*args: Any, **kwargs: Any) -> Any:
        built.append(create_app(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(http_transport, "create_app", keep)
    with anyio.fail_after(10):
        async with http_server(emulator, clock) as url:
            notices = built[0].notices
            for _ in range(10):
                async with http_session(url, "legacy"):
                    pass
            async with http_session(url, "legacy") as still_open:
                await still_open.list_prompts()
                while len(notices._sessions) > 1:  # noqa: ASYNC110 - a closed session's teardown offers no event
                    await anyio.sleep(0.01)
                assert len(notices._sessions) == 1  # ten closed, one open


async def test_over_the_legacy_sse_transport_every_session_hears_once(emulator: Emulator, clock: FakeClock) -> None:
    caller, other = Heard(), Heard()
    chosen = settings(emulator, "--toolsets", "all", transport="sse")

    def sse(url: str, heard: Heard) -> Client:
        return Client(sse_client(f"{url}/sse"), mode="legacy", message_handler=heard)

    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as server, anyio.fail_after(10):
        async with sse(server.url, Heard()):
            pass  # a session that came and went
        async with sse(server.url, caller) as writer, sse(server.url, other) as reader:
            data(await writer.call_tool("snapshot", THOUGHT))
            await other.until(1)
            await writer.list_prompts()
            await reader.list_prompts()
            assert (caller.count, other.count) == (1, 1)


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


class HeldListing:
    """NeuralSnap in front of the emulator, holding its first answer to a listing (taken before a change) until
    released: a `resources/list` that began before a change and ends after it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.held, self.release = threading.Event(), threading.Event()
        self._first = True
        self.server = LoopbackServer(
            Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "PATCH", "PUT", "DELETE"])])
        )

    async def _forward(self, request: Request) -> Response:
        async with httpx2.AsyncClient(timeout=10) as http:
            answer = await http.request(
                request.method,
                f"{self.upstream}/{request.path_params['path']}",
                params=request.query_params,
                headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
                content=await request.body(),
            )
        if request.method == "GET" and request.path_params["path"] == "snapshots" and self._first:
            self._first = False
            self.held.set()
            await anyio.to_thread.run_sync(self.release.wait, 10)
        drop = ("content-length", "transfer-encoding", "content-encoding")
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in drop}
        return Response(answer.content, status_code=answer.status_code, headers=headers)


async def test_a_listing_begun_before_a_change_does_not_put_the_old_list_back(
    emulator: Emulator, clock: FakeClock
) -> None:
    proxy = HeldListing(emulator.environment()["NEURALSNAP_API_URL"])
    heard = Heard()
    with proxy.server, anyio.fail_after(10):
        async with (
            http_server(emulator, clock, neuralsnap_api_url=proxy.server.url) as url,
            http_session(url, "legacy", heard) as client,
        ):
            data(await client.call_tool("snapshot", {**THOUGHT, "name": "First"}))  # NeuralSnap's gate has probed
            await heard.until(1)
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.list_resources)  # its upstream answer is taken now, before the snapshot
                assert await anyio.to_thread.run_sync(proxy.held.wait, 3)
                saved = data(await client.call_tool("snapshot", THOUGHT))
                await heard.until(2)
                proxy.release.set()  # the old listing arrives after the change dropped the cache
            # A session that lists on the notice a moment later (told in the background, or on another replica).
            listed = snapshot_uris(await client.list_resources())
            assert f"neuralsnap://snapshots/{saved['id']}" in listed


async def test_over_stdio_with_debug_logs_stdout_carries_only_json_rpc_and_the_notice_comes_first(
    emulator: Emulator,
) -> None:
    spawn = params("--toolsets", "all", env={**emulator.environment(), "FLASHSNAP_LOG_LEVEL": "DEBUG"})
    version = "2025-11-25"
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "snapshot", "arguments": THOUGHT}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "snapshot", "arguments": {}}},
    ]  # fmt: skip
    wire = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with anyio.fail_after(15):
        async with await anyio.open_process(
            [spawn.command, *spawn.args], env=spawn.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            await process.stdin.send(wire[: wire.index(b"\n") + 1])
            out = b""
            while b'"id":1' not in out.replace(b" ", b""):
                out += await process.stdout.receive()
            await process.stdin.send(wire[wire.index(b"\n") + 1 :])
            while out.replace(b" ", b"").count(b'"id":') < 3:
                out += await process.stdout.receive()
            await process.stdin.aclose()
            async for chunk in process.stdout:
                out += chunk
    messages = [json.loads(line) for line in out.decode().splitlines()]  # every line is JSON
    assert all(message.get("jsonrpc") == "2.0" for message in messages)
    order = [message.get("method") or message.get("id") for message in messages]
    assert sorted(map(str, order)) == ["1", "2", "3", "notifications/resources/list_changed"]  # once: id 3 failed
    assert order.index("notifications/resources/list_changed") < order.index(2)  # before the result it is about


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
