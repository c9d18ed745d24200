"""Change notices: after a tool changes the snapshot listing, every stateful session and every `subscriptions/listen`
listener hears `resources/list_changed` once, over stdio, SSE and Streamable HTTP; a failed call tells nobody anything;
the sessions to tell are every live one, whatever a client re-sends, and none that closed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.sse import sse_client
from mcp.client.subscriptions import ResourcesListChanged
from mcp.types import InitializedNotification, ListResourcesResult, ResourceListChangedNotification
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.app import create_app
from server.clock import FakeClock
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports import http as http_transport
from server.transports.http import build_http_app
from tests.conftest import MODES, Connect
from tests.results import data, error
from tests.test_consent import User
from tests.test_stdio import params
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


@asynccontextmanager
async def http_server(emulator: Emulator, clock: FakeClock, **overrides: Any) -> AsyncIterator[str]:
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", **overrides)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as server:
        yield server.url


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


async def test_a_stateless_http_client_hears_of_its_own_change_on_its_calls_stream(
    emulator: Emulator, clock: FakeClock
) -> None:
    heard = Heard()
    chosen = settings(emulator, "--toolsets", "all", transport="streamable-http", http_stateless=True)
    with LoopbackServer(build_http_app(chosen, clock=clock), lifespan="on") as server, anyio.fail_after(60):
        async with http_session(server.url, "legacy", heard) as client:
            data(await client.call_tool("snapshot", THOUGHT))
            await heard.until(1)


# --- the sessions to tell ------------------------------------------------------------------------------------


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


# --- what a notice promises ----------------------------------------------------------------------------------


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
