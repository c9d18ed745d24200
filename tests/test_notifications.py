"""Change notices: after a tool changes the snapshot listing, every stateful session and every `subscriptions/listen`
listener hears `resources/list_changed`, over stdio and Streamable HTTP; a failed call tells nobody anything."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.subscriptions import ResourcesListChanged
from mcp.types import ListResourcesResult, ResourceListChangedNotification

from server.clock import FakeClock, SystemClock
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import MODES, Connect
from tests.results import data, error
from tests.servers import http_replica, valkey
from tests.test_consent import User
from tests.transports import http_client, serve, settings

TRANSPORTS = ["stdio", "http"]  # the transports users run; in memory adds nothing here
THOUGHT = {"name": "Ship small", "core": "Small pull requests get reviewed faster."}
LONG_TEXT = "We decided to ship every change behind a flag, and to review pull requests the same day. " * 2


class Heard:
    """A client's message handler that counts the `resources/list_changed` notices it is handed."""

    def __init__(self) -> None:
        self.count = 0
        self._more = anyio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceListChangedNotification):
            self.count += 1
            self._more.set()
            self._more = anyio.Event()

    async def until(self, count: int) -> None:
        with anyio.fail_after(30):
            while self.count < count:
                await self._more.wait()


class StandaloneStream:
    """Says when a Streamable HTTP client's GET stream is open, the only way a notice it did not cause reaches it.

    The server registers the stream in the same event-loop step as it sends the response's headers, ahead of
    any request that reaches it later: once they are here, whatever is sent to the session goes down the stream.
    """

    def __init__(self) -> None:
        self.open = anyio.Event()

    async def __call__(self, response: httpx2.Response) -> None:
        if response.request.method == "GET" and response.status_code == 200:
            self.open.set()

    async def wait(self) -> None:
        with anyio.fail_after(30):
            await self.open.wait()


@asynccontextmanager
async def http_session(
    url: str, mode: str, heard: Heard | None = None, stream: StandaloneStream | None = None
) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(timeout=30, event_hooks={"response": [stream] if stream else []})
    async with http_client(url, mode, heard, http) as client:
        yield client


def session(
    transport: str, emulator: Emulator, clock: FakeClock, mode: str, heard: Heard
) -> AbstractAsyncContextManager[Client]:
    """A client of a real server with every tool on (the listing of snapshots needs list_snapshots)."""
    return serve(transport, emulator, clock, "--toolsets", "all", mode=mode, message_handler=heard)


def snapshot_uris(listed: ListResourcesResult) -> set[str]:
    return {resource.uri for resource in listed.resources}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_session_hears_that_its_new_snapshot_changed_the_listing(
    emulator: Emulator, clock: FakeClock, transport: str
) -> None:
    heard = Heard()
    with anyio.fail_after(60):
        async with session(transport, emulator, clock, "legacy", heard) as client:
            assert client.server_capabilities.resources is not None
            assert client.server_capabilities.resources.list_changed is True
            assert snapshot_uris(await client.list_resources()) == set()  # the listing is cached now
            saved = data(await client.call_tool("snapshot", THOUGHT))
            await heard.until(1)
            # Listing again on the notice shows the new snapshot: the change dropped the cached listing.
            assert snapshot_uris(await client.list_resources()) == {f"neuralsnap://snapshots/{saved['id']}"}
            await client.list_prompts()  # one more round trip on the same stream
            assert heard.count == 1  # once: on the call's own stream, not again on the session's


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_2026_client_hears_it_on_its_listen_stream(
    emulator: Emulator, clock: FakeClock, transport: str
) -> None:
    heard = Heard()
    with anyio.fail_after(60):
        async with session(transport, emulator, clock, "auto", heard) as client:
            assert client.protocol_version == "2026-07-28"
            assert client.server_capabilities.resources is not None
            assert client.server_capabilities.resources.list_changed is True
            async with client.listen(resources_list_changed=True) as listening:
                saved = data(await client.call_tool("snapshot", THOUGHT))
                assert isinstance(await anext(listening), ResourcesListChanged)
                assert f"neuralsnap://snapshots/{saved['id']}" in snapshot_uris(await client.list_resources())


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_failed_call_tells_nobody(
    emulator: Emulator, state: EmulatorState, clock: FakeClock, transport: str
) -> None:
    heard = Heard()
    with anyio.fail_after(60):
        async with session(transport, emulator, clock, "legacy", heard) as client:
            assert error(await client.call_tool("snapshot", {"name": "No core"}))["code"] == "invalid_arguments"
            contract = state.variants
            state.variants = dataclasses.replace(contract, plan="starter")  # NeuralSnap refuses every call: 403
            assert error(await client.call_tool("snapshot", THOUGHT))["code"] != "invalid_arguments"
            assert state.count_status("snapshot_create", 403) == 1
            state.variants = contract
            await client.list_prompts()  # a notice would have come down the same stream, before either result
            assert heard.count == 0
            data(await client.call_tool("snapshot", THOUGHT))
            await heard.until(1)


async def test_every_tool_that_changes_snapshots_tells_of_it(emulator: Emulator, clock: FakeClock) -> None:
    heard, user = Heard(), User()  # the user agrees to the delete when asked
    with anyio.fail_after(60):
        async with serve(
            "http", emulator, clock, "--toolsets", "all", mode="legacy", message_handler=heard, elicitation=user
        ) as client:
            saved = data(await client.call_tool("snapshot", THOUGHT))["id"]
            uri = f"neuralsnap://snapshots/{saved}"
            calls: list[tuple[str, dict[str, Any]]] = [
                ("update_snapshot", {"id": saved, "name": "Ship smaller"}),
                ("crystallize", {"text": LONG_TEXT, "source_type": "conversation"}),
                ("delete_snapshot", {"id": saved}),
            ]
            for told, (tool, arguments) in enumerate(calls, start=2):
                data(await client.call_tool(tool, arguments))
                await heard.until(told)
                listed = {r.uri: r.name for r in (await client.list_resources()).resources}
                if tool == "update_snapshot":
                    assert listed[uri] == "Ship smaller"
                if tool == "crystallize":
                    assert len(listed) > 1
            assert uri not in listed
            await client.list_prompts()  # one more round trip on the same stream
            assert heard.count == 1 + len(calls)
            assert len(user.asked) == 1  # the delete was put to the user


@pytest.mark.parametrize("mode", MODES)
async def test_a_delete_the_user_declines_tells_nobody_and_one_agreed_to_does(
    emulator: Emulator, state: EmulatorState, clock: FakeClock, mode: str
) -> None:
    heard, user = Heard(), User("decline")
    flags = ("--toolsets", "all")
    with anyio.fail_after(60):
        async with (
            serve("http", emulator, clock, *flags, mode=mode, message_handler=heard, elicitation=user) as client,
            contextlib.AsyncExitStack() as stack,
        ):
            # 2025-11-25: the notice on the call's own stream; 2026-07-28: on the listen stream.
            listening = (
                await stack.enter_async_context(client.listen(resources_list_changed=True))
                if (mode == "auto")
                else None
            )

            async def told(count: int) -> None:
                if listening is None:
                    await heard.until(count)
                else:
                    assert isinstance(await anext(listening), ResourcesListChanged)

            saved = data(await client.call_tool("snapshot", THOUGHT))["id"]
            await told(1)
            assert error(await client.call_tool("delete_snapshot", {"id": saved}))["code"] == "declined"
            await client.list_prompts()  # a notice would have come down the call's stream, before its result
            assert heard.count == 1  # the snapshot's (the SDK hands listen events to message_handler too)
            assert state.snapshot(saved) is not None
            user.action, user.content = "accept", {"confirm": True}
            data(await client.call_tool("delete_snapshot", {"id": saved}))  # asked in rounds at 2026-07-28
            await told(2)
            assert state.snapshot(saved) is None


async def test_every_session_and_listener_of_the_process_hears_of_a_change(
    emulator: Emulator, clock: FakeClock
) -> None:
    caller, other, gone = Heard(), Heard(), Heard()
    callers_stream, others_stream = StandaloneStream(), StandaloneStream()
    app = build_http_app(settings(emulator, "--toolsets", "all", transport="streamable-http"), clock=clock)
    with LoopbackServer(app, lifespan="on") as server, anyio.fail_after(60):
        async with http_session(server.url, "legacy", gone):
            pass  # a session that came and went: nothing is sent to it, and it holds up nobody
        async with (
            http_session(server.url, "legacy", caller, callers_stream) as client,
            http_session(server.url, "legacy", other, others_stream),
            http_session(server.url, "auto") as modern,
            modern.listen(resources_list_changed=True) as listening,
        ):
            await callers_stream.wait()
            await others_stream.wait()
            data(await client.call_tool("snapshot", THOUGHT))
            await other.until(1)  # on its own GET stream: it called nothing
            assert isinstance(await anext(listening), ResourcesListChanged)
            await client.list_prompts()  # one more round trip on the same stream
            assert caller.count == 1  # the caller is told on its call's stream, and not again on its GET stream
    assert gone.count == 0


@pytest.mark.parametrize("mode", MODES)
async def test_the_capability_is_claimed_only_where_the_listing_can_change(connect: Connect, mode: str) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "all"}) as client:
        capabilities = client.server_capabilities
        assert capabilities.resources is not None
        assert capabilities.resources.list_changed is True
        assert not capabilities.resources.subscribe  # no resource update is ever sent
        assert capabilities.tools is not None
        assert not capabilities.tools.list_changed  # the tools and prompts are fixed for the life of the process
        assert capabilities.prompts is not None
        assert not capabilities.prompts.list_changed
    # By default resources/list shows no snapshots (list_snapshots is off): nothing there can change.
    for narrowed in ({}, {"FLASHSNAP_TOOLSETS": "all", "FLASHSNAP_READ_ONLY": "1"}):
        async with connect(mode=mode, env=narrowed) as client:
            assert client.server_capabilities.resources is not None
            assert not client.server_capabilities.resources.list_changed


@pytest.fixture
def live() -> Iterator[Emulator]:
    """The emulator on the wall clock, as replicas in their own processes keep time."""
    with Emulator(EmulatorState(SystemClock())) as emulator:
        yield emulator


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


async def test_a_stateless_http_client_hears_of_its_own_change_on_its_calls_stream(
    emulator: Emulator, clock: FakeClock
) -> None:
    heard = Heard()
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", http_stateless=True)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as server, anyio.fail_after(60):
        async with http_session(server.url, "legacy", heard) as client:
            data(await client.call_tool("snapshot", THOUGHT))
            await heard.until(1)
