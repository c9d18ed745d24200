"""Hostile tests of asking the user first (issue 20): what a client, a model or an operator can do to it.

Each failing test here is a finding, asserting the behaviour the contract calls for; the passing ones cover
attacks the other consent tests do not try (a sealed yes raced by concurrent calls, a sealed state moved to
other arguments or another tool by a hand-written request).
"""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import METHOD_NOT_FOUND, CallToolResult, ElicitResult, ErrorData, InputRequiredResult, InputResponses

from server.clock import FakeClock, SystemClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import NO_QUESTIONS, Connect
from tests.results import data, error
from tests.servers import http_replica, valkey
from tests.test_consent import CHAT, CRYSTALLIZE, DEFAULT, DELETE, SNAPSHOT, User, saved, sse_data, still_there
from tests.test_shutdown import HELLO, Server, call, result

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 4000}  # 3,001 words: asked by default


# --- findings ------------------------------------------------------------------------------------------------


class ListeningServer(Server):
    """A stdio `flashsnap-mcp` whose requests to the client (the pushed question) are collected too."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        super().__init__(*args, env=env)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            with self._lock:
                if "method" in message and "id" in message:
                    self.requests.append(message)
                elif "id" in message:
                    self.answers[message["id"]] = message
                self._lock.notify_all()

    def wait_request(self, method: str, timeout: float = 30) -> dict[str, Any]:
        with self._lock:
            assert self._lock.wait_for(lambda: any(r["method"] == method for r in self.requests), timeout)
            return next(r for r in self.requests if r["method"] == method)


def test_a_shutdown_while_the_user_reads_the_question_says_nothing_was_sent(
    emulator: Emulator, state: EmulatorState
) -> None:
    """A pushed question may stay open for 10 minutes; a restart of the server (Claude Desktop restarting it,
    a deploy) cuts it after the grace period. Nothing was sent upstream, yet the result said
    `maybe_processed: true` and "It may have reached the upstream: check before calling it again (the request
    id names it)", with no request id: a model tells the user the snapshot may be gone. (Closing stdin while
    the question is open, as a desktop host quitting does, gives the same answer after the 10 s grace.)"""
    hello = json.loads(json.dumps(HELLO))
    hello[0]["params"]["capabilities"] = {"elicitation": {}}
    env = {**emulator.environment(), "FLASHSNAP_TOOLSETS": "all", "FLASHSNAP_SHUTDOWN_GRACE_S": "0.5"}
    server = ListeningServer(env=env)
    server.send(*hello, call(1, "snapshot", SNAPSHOT))
    snapshot_id = result(server.wait_answer(1))["structuredContent"]["id"]
    server.send(call(2, "delete_snapshot", {"id": snapshot_id}))
    server.wait_request("elicitation/create")  # the user is reading the question; it is never answered
    server.process.send_signal(signal.SIGTERM)
    answer = result(server.wait_answer(2))
    assert server.exit_code() == 0, server.stderr.decode()
    assert state.count(DELETE) == 0
    assert still_there(state, snapshot_id)
    err = answer["_meta"]["io.flashsnap/error"]
    assert err["maybe_processed"] is False, err  # nothing left: it cannot have reached NeuralSnap
    assert "may have reached" not in json.dumps(answer), answer


@pytest.mark.parametrize(
    "reply",
    [{"result": "accept"}, {"error": {"code": "denied", "message": 5}}],
    ids=["result-not-an-object", "error-code-not-a-number"],
)
def test_a_malformed_reply_to_the_question_ends_the_call_at_once(
    emulator: Emulator, state: EmulatorState, reply: dict[str, Any]
) -> None:
    """A client (over stdio) answers the pushed question, with its id, in a shape the server cannot read. The
    reply was dropped and the tools/call stayed open, unanswered, for the whole 10 minutes the server waits
    for a human. It should end at once: nothing sent, the question could not be put to the user."""
    hello = json.loads(json.dumps(HELLO))
    hello[0]["params"]["capabilities"] = {"elicitation": {}}
    server = ListeningServer(env={**emulator.environment(), "FLASHSNAP_TOOLSETS": "all"})
    try:
        server.send(*hello, call(1, "snapshot", SNAPSHOT))
        snapshot_id = result(server.wait_answer(1))["structuredContent"]["id"]
        server.send(call(2, "delete_snapshot", {"id": snapshot_id}))
        question = server.wait_request("elicitation/create")
        server.send({"jsonrpc": "2.0", "id": question["id"], **reply})
        answer = result(server.wait_answer(2, timeout=10))
        # The client cannot show the question: confirm first, at once (and nothing sent).
        assert answer["_meta"]["io.flashsnap/error"]["code"] == "confirmation_required"
    finally:
        server.process.kill()
    assert state.count(DELETE) == 0


async def test_an_accept_without_content_in_a_round_is_not_a_yes(connect: Connect, state: EmulatorState) -> None:
    """Pushed, an `accept` with no content is refused ("the answer was not the form's"); answered in a
    2026-07-28 round, the same answer counted as a yes and spent (`answer.content or {}` fills the box's
    default, True). The box was never ticked: both eras must refuse it alike."""
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


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_accept_that_leaves_the_box_out_is_not_a_yes(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    """A form client that applies no defaults shows the box unticked, and, like an HTML form, leaves an
    unticked box out of what it submits: `accept` with `{}`. The server filled in its own default (True) and
    deleted. Only an explicit `confirm: true` is the user's yes."""
    user = User("accept", {})
    async with connect(mode=mode, toolsets=("all",), elicitation=user) as client:
        snapshot_id = await saved(client)
        err = error(await client.call_tool("delete_snapshot", {"id": snapshot_id}))
    assert len(user.asked) == 1
    assert err["code"] == "declined"
    assert state.count(DELETE) == 0
    assert still_there(state, snapshot_id)


async def test_crystallize_under_the_threshold_does_not_spend_more_than_it_unasked(
    connect: Connect, state: EmulatorState
) -> None:
    """The estimate counts only the text read (4 characters a token) and leaves out the tokens of the
    snapshots written back, which NeuralSnap charges too (`totalTokensOut`, 60 a snapshot here, up to 5).
    A 5,332-character text in five paragraphs went through unasked and spent 1,633 tokens, 1,225 words'
    worth, above the 1,000 words (1,333 tokens) the server spends unasked."""
    paragraph = ("Notes worth keeping are notes you can find again. " * 21)[:1060]
    text = "\n\n".join([paragraph] * 5)
    text += "x" * (5_332 - len(text))
    assert len(text) == 5_332
    user = User("decline")
    async with connect(env=DEFAULT, toolsets=("all",), elicitation=user) as client:
        outcome = await client.call_tool("crystallize", {"text": text})
    if not user.asked:
        spent = data(outcome)["tokens"]
        assert spent * 0.75 <= 1_000, f"spent {spent} crystallize tokens unasked"
    else:
        assert state.count(CRYSTALLIZE) == 0


async def test_a_sealed_yes_spent_while_the_shared_store_was_down_is_not_spent_again(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, tmp_path: Path
) -> None:
    """With the shared store (Redis) down, a yes could be marked used only in the process's own memory (the
    store falls back to it); once Redis was back, the same sealed yes was new to it and spent a second time
    (and any other replica would take it meanwhile). A yes that cannot be marked used where every process
    looks is not taken: it agreed to one call, which happens once the store is back."""
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


async def test_a_client_that_cannot_show_the_question_is_not_stuck_declining(
    connect: Connect, state: EmulatorState
) -> None:
    """A 2025-11-25 client declares `elicitation` but its host cannot show a form: it answers the question with
    -32601 (method not found). The call said `declined` ("Do not call it again unless the user asks for it"),
    though the user was never asked, and `confirm: true` is ignored for such a client, so no call can ever
    go through: asking the user, as the hint says, leads to the same answer. A client that said it cannot
    ask is one that cannot ask: confirm first, and let its `confirm: true` count."""

    async def cannot_show(context: Any, params: Any) -> ErrorData:
        return ErrorData(code=METHOD_NOT_FOUND, message="Method not found")

    async with connect(mode="legacy", toolsets=("all",), elicitation=cannot_show) as client:
        snapshot_id = await saved(client)
        first = error(await client.call_tool("delete_snapshot", {"id": snapshot_id}))
        assert first["code"] == "confirmation_required", first
        assert state.count(DELETE) == 0
        assert data(await client.call_tool("delete_snapshot", {"id": snapshot_id, "confirm": True}))["deleted"]
    assert state.count(DELETE) == 1


async def test_crystallize_asks_from_the_first_character_over_the_line(connect: Connect, state: EmulatorState) -> None:
    """The instructions say "more than about 2,664 characters asks": 2,665 (1,334 tokens, 1,000.5 words) does."""
    user = User("decline")
    async with connect(env=DEFAULT, toolsets=("all",), elicitation=user) as client:
        assert "more than about 2,664 characters" in (client.instructions or "")
        assert error(await client.call_tool("crystallize", {"text": "x" * 2_665}))["code"] == "declined"
    assert len(user.asked) == 1
    assert state.count(CRYSTALLIZE) == 0


# --- attacks that were refused (coverage the other tests lack) ------------------------------------------------


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


async def test_a_sealed_state_moved_to_another_snapshot_or_tool_is_refused(
    emulator: Emulator, clock: Any, state: EmulatorState
) -> None:
    """Hand-written 2026-07-28 rounds: the yes to deleting one snapshot, sent with another id, another tool,
    or edited, is refused by the seal; the same yes for the question it answered deletes."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }
    yes = {"confirm": {"action": "accept", "content": {"confirm": True}}}
    environ = {**NO_QUESTIONS, **emulator.environment()}
    settings = Settings.from_env(environ, transport="streamable-http", toolsets=("all",), http_stateless=True)

    async def tools_call(http: httpx2.AsyncClient, url: str, name: str, args: dict[str, Any], **more: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": name, "arguments": args, "_meta": meta, **more}}  # fmt: skip
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
                   "Mcp-Method": "tools/call", "Mcp-Name": name}  # fmt: skip
        response = await http.post(f"{url}/mcp", json=body, headers=headers)
        ctype = response.headers.get("content-type", "")
        return response.json() if ctype.startswith("application/json") else sse_data(response)

    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with httpx2.AsyncClient(timeout=30) as http:
            ids = []
            for _ in range(2):
                made = await tools_call(http, server.url, "snapshot", SNAPSHOT)
                ids.append(made["result"]["structuredContent"]["id"])
            mine, other = ids
            asked = await tools_call(http, server.url, "delete_snapshot", {"id": mine})
            sealed = asked["result"]["requestState"]
            tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
            for name, args, state_ in (
                ("delete_snapshot", {"id": other}, sealed),
                ("delete_snapshot", {"id": other, "confirm": True}, sealed),
                ("generate", GENERATE, sealed),
                ("delete_snapshot", {"id": mine}, tampered),
            ):
                refused = await tools_call(http, server.url, name, args, inputResponses=yes, requestState=state_)
                assert refused["error"]["code"] == -32602, refused
            assert state.count(DELETE) == 0
            done = await tools_call(
                http, server.url, "delete_snapshot", {"id": mine}, inputResponses=yes, requestState=sealed
            )
            assert done["result"]["structuredContent"] == {"id": mine, "deleted": True}
    assert state.count(DELETE) == 1
    assert state.count(CHAT) == 0
    assert still_there(state, other)


async def test_a_sealed_yes_raced_on_two_replicas_spends_once() -> None:
    """Six copies of one sealed yes, three to each of two replicas (processes sharing the default SQLite
    store), at once: one generation, five questions asked anew."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
               "Mcp-Method": "tools/call", "Mcp-Name": "generate"}  # fmt: skip
    yes = {"confirm": {"action": "accept", "content": {"confirm": True}}}
    outcomes: list[str] = []

    async def generate(http: httpx2.AsyncClient, url: str, **more: Any) -> dict[str, Any]:
        params = {"name": "generate", "arguments": GENERATE, "_meta": meta, **more}
        response = await http.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                        "params": params}, headers=headers)  # fmt: skip
        ctype = response.headers.get("content-type", "")
        answer: dict[str, Any] = response.json() if ctype.startswith("application/json") else sse_data(response)
        return answer

    with Emulator(EmulatorState(SystemClock())) as live, anyio.fail_after(90):
        env = {**live.environment(), **DEFAULT, "FLASHSNAP_HTTP_STATELESS": "1"}
        async with contextlib.AsyncExitStack() as stack:
            urls = [await stack.enter_async_context(http_replica(env)) for _ in range(2)]
            async with httpx2.AsyncClient(timeout=30) as http:
                sealed = (await generate(http, urls[0]))["result"]["requestState"]

                async def answer(url: str) -> None:
                    said = await generate(http, url, inputResponses=yes, requestState=sealed)
                    outcomes.append(said["result"].get("resultType", "complete"))

                async with anyio.create_task_group() as group:
                    for url in urls * 3:
                        group.start_soon(answer, url)
        assert sorted(outcomes) == ["complete"] + ["input_required"] * 5
        assert live.state.count(CHAT) == 1


async def test_over_http_an_unreadable_reply_to_the_question_ends_the_call_at_once(
    emulator: Emulator, clock: FakeClock, state: EmulatorState
) -> None:
    """The same over Streamable HTTP with a session: the reply POSTed in a shape the SDK cannot read goes on as
    an error reply with its id, so the call waiting on it ends now, with nothing sent."""
    environ = {**NO_QUESTIONS, **emulator.environment()}
    settings = Settings.from_env(environ, transport="streamable-http", toolsets=("all",), http_stateless=False)
    headers = {"Accept": "application/json, text/event-stream"}

    async def messages(response: httpx2.Response) -> Any:
        async for line in response.aiter_lines():
            if line.startswith("data:") and line[5:].strip():
                yield json.loads(line[5:])

    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        url = f"{server.url}/mcp"
        async with httpx2.AsyncClient(timeout=30) as http:
            hello = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"elicitation": {}},
                "clientInfo": {"name": "raw", "version": "1"},
            }
            opened = await http.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}, headers=headers
            )
            headers |= {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
            await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            save = {"name": "snapshot", "arguments": SNAPSHOT}
            async with http.stream(
                "POST", url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": save}, headers=headers
            ) as made:
                snapshot_id = next_id = None
                async for message in messages(made):
                    if message.get("id") == 2:
                        snapshot_id = message["result"]["structuredContent"]["id"]
                        break
            delete = {"name": "delete_snapshot", "arguments": {"id": snapshot_id}}
            async with http.stream(
                "POST", url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": delete}, headers=headers
            ) as asked:
                answer = None
                async for message in messages(asked):
                    if message.get("method") == "elicitation/create":
                        next_id = message["id"]
                        unreadable = {"jsonrpc": "2.0", "id": next_id, "result": "accept"}
                        replied = await http.post(url, json=unreadable, headers=headers)
                        assert replied.status_code in (200, 202), replied.text
                    elif message.get("id") == 3:
                        answer = message["result"]
                        break
    assert next_id is not None
    assert answer is not None
    assert answer["_meta"]["io.flashsnap/error"]["code"] == "confirmation_required"
    assert state.count(DELETE) == 0
