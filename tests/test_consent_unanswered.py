"""A question that gets no answer the server can use: a reply it cannot read (over stdio and over Streamable HTTP),
a host that cannot show the form, a shutdown while the user reads it. Each call ends at once, sends nothing and
says so truthfully."""

from __future__ import annotations

import json
import signal
from typing import Any

import anyio
import httpx2
import pytest
from mcp.types import METHOD_NOT_FOUND, ErrorData

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import NO_QUESTIONS, Connect
from tests.results import data, error
from tests.test_consent import DELETE, SNAPSHOT, saved, still_there
from tests.test_shutdown import HELLO, Server, call, result


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
    a deploy) cuts it after the grace period. Nothing was sent upstream, so the result says so
    (`maybe_processed: false`), never "It may have reached the upstream", which would have a model tell the
    user the snapshot may be gone. (Closing stdin while the question is open, as a desktop host quitting does,
    ends it the same way after the 10 s grace.)"""
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
    tools/call ends at once, not after the 10 minutes the server waits for a human: nothing sent, and the
    question could not be put to the user."""
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


async def test_over_http_an_unreadable_reply_to_the_question_ends_the_call_at_once(
    emulator: Emulator, clock: FakeClock, state: EmulatorState
) -> None:
    """Over Streamable HTTP with a session: the reply POSTed in a shape the SDK cannot read goes on as an
    error reply with its id, so the call waiting on it ends now, with nothing sent."""
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


async def test_a_client_that_cannot_show_the_question_is_not_stuck_declining(
    connect: Connect, state: EmulatorState
) -> None:
    """A 2025-11-25 client declares `elicitation` but its host cannot show a form: it answers the question with
    -32601 (method not found). The user was never asked, so the call does not say `declined` ("Do not call it
    again unless the user asks for it"), which no call could ever get past: a client that said it cannot ask
    is one that cannot ask, told to confirm first, and its `confirm: true` counts."""

    async def cannot_show(context: Any, params: Any) -> ErrorData:
        return ErrorData(code=METHOD_NOT_FOUND, message="Method not found")

    async with connect(mode="legacy", toolsets=("all",), elicitation=cannot_show) as client:
        snapshot_id = await saved(client)
        first = error(await client.call_tool("delete_snapshot", {"id": snapshot_id}))
        assert first["code"] == "confirmation_required", first
        assert state.count(DELETE) == 0
        assert data(await client.call_tool("delete_snapshot", {"id": snapshot_id, "confirm": True}))["deleted"]
    assert state.count(DELETE) == 1
