"""The 2026-07-28 rounds: an answer counts once, for the question it answered, and only as the user gave it.

A sealed yes replayed, raced by concurrent calls or by two replicas, moved to other arguments or another tool,
answered without content, or sent while the shared store is down: one call at most, and never one not asked.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.types import CallToolResult, ElicitResult, InputRequiredResult, InputResponses

from server.clock import FakeClock, SystemClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import NO_QUESTIONS, Connect
from tests.results import data, error
from tests.servers import http_replica, valkey
from tests.test_consent import CHAT, DEFAULT, DELETE, SNAPSHOT, User, sse_data, still_there

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 4000}  # 3,001 words: asked by default
ROUND = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
}
YES = {"confirm": {"action": "accept", "content": {"confirm": True}}}


async def round_call(
    http: httpx2.AsyncClient, url: str, name: str, args: dict[str, Any], **more: Any
) -> dict[str, Any]:
    """A hand-written 2026-07-28 `tools/call` (`more`: the answers and the sealed state), and its JSON-RPC answer."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": args, "_meta": ROUND, **more}}  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
               "Mcp-Method": "tools/call", "Mcp-Name": name}  # fmt: skip
    response = await http.post(f"{url}/mcp", json=body, headers=headers)
    ctype = response.headers.get("content-type", "")
    answer: dict[str, Any] = response.json() if ctype.startswith("application/json") else sse_data(response)
    return answer


# --- once, however often it is sent --------------------------------------------------------------------------


async def test_a_sealed_yes_spends_once_however_often_it_is_sent(connect: Connect, state: EmulatorState) -> None:
    args = {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 4000}
    async with connect(env=DEFAULT, elicitation=User()) as client:
        first = await client.session.call_tool("generate", args, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        yes: InputResponses = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
        state_ = first.request_state
        done = await client.session.call_tool(
            "generate", args, allow_input_required=True, input_responses=yes, request_state=state_
        )
        assert isinstance(done, CallToolResult)
        assert data(done)["words_used"] > 0
        replayed = await client.session.call_tool(
            "generate", args, allow_input_required=True, input_responses=yes, request_state=state_
        )
        assert isinstance(replayed, InputRequiredResult)  # asked anew, not spent again
    assert state.count(CHAT) == 1


async def test_an_answer_without_the_state_we_minted_does_not_count(connect: Connect, state: EmulatorState) -> None:
    args = {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 4000}
    yes: InputResponses = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
    async with connect(env=DEFAULT, elicitation=User()) as client:
        forged = await client.session.call_tool("generate", args, allow_input_required=True, input_responses=yes)
        assert isinstance(forged, InputRequiredResult)
    assert state.count(CHAT) == 0


async def test_an_accept_without_content_in_a_round_is_not_a_yes(connect: Connect, state: EmulatorState) -> None:
    """An `accept` with no content is not a yes, pushed or answered in a 2026-07-28 round: the box was never
    ticked, and the server's own default for it (True) does not tick it. Both eras refuse it alike."""
    async with connect(env=DEFAULT, elicitation=User()) as client:
        first = await client.session.call_tool("generate", GENERATE, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        bare: InputResponses = {"confirm": ElicitResult(action="accept", content=None)}
        answered = await client.session.call_tool(
            "generate", GENERATE, allow_input_required=True, input_responses=bare, request_state=first.request_state
        )
        assert isinstance(answered, CallToolResult)
        assert error(answered)["code"] == "declined"
    assert state.count(CHAT) == 0


async def test_a_sealed_yes_spent_while_the_shared_store_was_down_is_not_spent_again(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, tmp_path: Path
) -> None:
    """With the shared store (Redis) down, a yes could be marked used only in the process's own memory (the
    store falls back to it), where neither another replica nor this one, once Redis is back, would see it and
    both could spend it again. A yes that cannot be marked used where every process looks is not taken: it
    agreed to one call, which happens once the store is back."""
    yes: InputResponses = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
    with valkey(tmp_path) as redis_server:
        environ = {**emulator.environment(), "FLASHSNAP_REDIS_URL": redis_server.url, **DEFAULT}
        settings = Settings.from_env(environ, transport="streamable-http", http_stateless=True)
        with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(60):
            async with Client(f"{server.url}/mcp", elicitation_callback=User()) as client:
                data(await client.call_tool("list_workspaces", {}))  # on the shared store
                redis_server.stop()
                first = await client.session.call_tool("generate", GENERATE, allow_input_required=True)
                assert isinstance(first, InputRequiredResult)
                sealed = first.request_state
                spent = await client.session.call_tool(
                    "generate", GENERATE, allow_input_required=True, input_responses=yes, request_state=sealed
                )
                assert isinstance(spent, CallToolResult)
                # Not taken while it cannot be marked used where every replica looks: nothing spent yet.
                assert error(spent)["code"] == "not_confirmed"
                assert state.count(CHAT) == 0
                redis_server.start()
                clock.advance(6)  # past the store's retry interval: back on the shared store
                data(await client.call_tool("list_workspaces", {}))
                replayed = await client.session.call_tool(
                    "generate", GENERATE, allow_input_required=True, input_responses=yes, request_state=sealed
                )
                assert isinstance(replayed, CallToolResult)
                data(replayed)  # the one yes, taken now that it is marked used for every replica
                again = await client.session.call_tool(
                    "generate", GENERATE, allow_input_required=True, input_responses=yes, request_state=sealed
                )
                assert isinstance(again, InputRequiredResult)  # and never a second time
    assert state.count(CHAT) == 1


# --- raced ---------------------------------------------------------------------------------------------------


async def test_a_sealed_yes_raced_by_concurrent_calls_spends_once(connect: Connect, state: EmulatorState) -> None:
    yes: InputResponses = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
    outcomes: list[Any] = []
    async with connect(env=DEFAULT, elicitation=User()) as client:
        first = await client.session.call_tool("generate", GENERATE, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)

        async def spend() -> None:
            sealed = first.request_state
            call = client.session.call_tool
            outcomes.append(
                await call("generate", GENERATE, allow_input_required=True, input_responses=yes, request_state=sealed)
            )

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(spend)
    assert sum(isinstance(o, CallToolResult) for o in outcomes) == 1
    assert sum(isinstance(o, InputRequiredResult) for o in outcomes) == 5  # asked anew
    assert state.count(CHAT) == 1


async def test_a_sealed_yes_raced_on_two_replicas_spends_once() -> None:
    """Six copies of one sealed yes, three to each of two replicas (processes sharing the default SQLite
    store), at once: one generation, five questions asked anew."""
    outcomes: list[str] = []

    with Emulator(EmulatorState(SystemClock())) as live, anyio.fail_after(90):
        env = {**live.environment(), **DEFAULT, "FLASHSNAP_HTTP_STATELESS": "1"}
        async with contextlib.AsyncExitStack() as stack:
            urls = [await stack.enter_async_context(http_replica(env)) for _ in range(2)]
            async with httpx2.AsyncClient(timeout=30) as http:
                sealed = (await round_call(http, urls[0], "generate", GENERATE))["result"]["requestState"]

                async def answer(url: str) -> None:
                    said = await round_call(http, url, "generate", GENERATE, inputResponses=YES, requestState=sealed)
                    outcomes.append(said["result"].get("resultType", "complete"))

                async with anyio.create_task_group() as group:
                    for url in urls * 3:
                        group.start_soon(answer, url)
        assert sorted(outcomes) == ["complete"] + ["input_required"] * 5
        assert live.state.count(CHAT) == 1


# --- moved ---------------------------------------------------------------------------------------------------


async def test_a_sealed_state_moved_to_another_snapshot_or_tool_is_refused(
    emulator: Emulator, clock: Any, state: EmulatorState
) -> None:
    """Hand-written 2026-07-28 rounds: the yes to deleting one snapshot, sent with another id, another tool,
    or edited, is refused by the seal; the same yes for the question it answered deletes."""
    environ = {**NO_QUESTIONS, **emulator.environment()}
    settings = Settings.from_env(environ, transport="streamable-http", toolsets=("all",), http_stateless=True)

    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with httpx2.AsyncClient(timeout=30) as http:
            ids = []
            for _ in range(2):
                made = await round_call(http, server.url, "snapshot", SNAPSHOT)
                ids.append(made["result"]["structuredContent"]["id"])
            mine, other = ids
            asked = await round_call(http, server.url, "delete_snapshot", {"id": mine})
            sealed = asked["result"]["requestState"]
            tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
            for name, args, state_ in (
                ("delete_snapshot", {"id": other}, sealed),
                ("delete_snapshot", {"id": other, "confirm": True}, sealed),
                ("generate", GENERATE, sealed),
                ("delete_snapshot", {"id": mine}, tampered),
            ):
                refused = await round_call(http, server.url, name, args, inputResponses=YES, requestState=state_)
                assert refused["error"]["code"] == -32602, refused
            assert state.count(DELETE) == 0
            done = await round_call(
                http, server.url, "delete_snapshot", {"id": mine}, inputResponses=YES, requestState=sealed
            )
            assert done["result"]["structuredContent"] == {"id": mine, "deleted": True}
    assert state.count(DELETE) == 1
    assert state.count(CHAT) == 0
    assert still_there(state, other)
