"""JSON-RPC batches: taken under 2025-03-26, which requires servers to accept them; refused where the version has none.

Issue 31, row 7: `initialize` with 2025-03-26 was accepted, then a batch refused. Each protocol version the server
negotiates, over stdio (a real subprocess) and Streamable HTTP (a real uvicorn server, where a request without
an MCP-Protocol-Version header is 2025-03-26).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.batches import MAX_BATCH
from server.transports.http import build_http_app
from tests.test_stdio import COMMAND, params

TAKES = ["2025-03-26"]
REFUSES = ["2024-11-05", "2025-06-18", "2025-11-25"]

# One of each kind of member: two requests, a notification, a malformed request, and something that is no message.
BATCH: list[Any] = [
    {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
    {"jsonrpc": "2.0", "id": "two", "method": "tools/call", "params": {"name": "list_workspaces", "arguments": {}}},
    {"jsonrpc": "1.0", "id": 3, "method": "tools/list"},
    42,
]


def initialize(version: str) -> dict[str, Any]:
    hello = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    return {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def by_id(answers: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {a["id"]: a for a in answers}


def assert_taken(answers: list[dict[str, Any]], state: EmulatorState) -> None:
    """Every request of BATCH answered, in one array; the notification not; the bad members with their errors."""
    got = by_id(answers)
    assert len(answers) == 4, answers  # 1, "two", 3 and the one that is no message; not the notification
    assert got[1]["result"]["tools"]
    assert got["two"]["result"]["structuredContent"]["workspaces"], got["two"]
    assert got[3]["error"]["code"] == -32600
    assert got[None]["error"]["code"] == -32600
    assert state.count("workspaces") == 1


class Stdio:
    """A `flashsnap-mcp` subprocess over stdio, read line by line (a batch's answer is one line: an array)."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._lines = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps(message).encode() + b"\n")

    async def line(self) -> Any:
        return json.loads(await self._lines.receive_until(b"\n", 10_000_000))


@asynccontextmanager
async def stdio(emulator: Emulator, version: str) -> AsyncIterator[Stdio]:
    env = {**(params().env or {}), **emulator.environment(), "FLASHSNAP_STATE": "memory"}
    with anyio.fail_after(60):
        async with await anyio.open_process([COMMAND], env=env, stderr=None) as process:
            server = Stdio(process)
            await server.send(initialize(version))
            assert (await server.line())["result"]["protocolVersion"] == version
            await server.send(INITIALIZED)
            yield server
            process.terminate()


@pytest.mark.parametrize("version", TAKES)
async def test_over_stdio_a_batch_is_taken_and_answered_as_one_array(
    emulator: Emulator, state: EmulatorState, version: str
) -> None:
    async with stdio(emulator, version) as server:
        await server.send(BATCH)
        answers = await server.line()
        assert isinstance(answers, list)
        assert_taken(answers, state)


@pytest.mark.parametrize("version", REFUSES)
async def test_over_stdio_a_batch_is_refused_where_the_version_has_none(
    emulator: Emulator, state: EmulatorState, version: str
) -> None:
    async with stdio(emulator, version) as server:
        await server.send(BATCH)
        answers = [await server.line() for _ in range(3)]  # each request refused: 1, "two" and 3
        assert {a["id"] for a in answers} == {1, "two", 3}
        for answer in answers:
            assert answer["error"]["code"] == -32600
            assert version in answer["error"]["message"]
    assert state.count("workspaces") == 0


PING = {"jsonrpc": "2.0", "id": "after", "method": "ping"}
# Batches JSON-RPC 2.0 answers whole, and what 2025-03-26 rules out of them: (batch, the answer's ids and codes).
EDGES: dict[str, tuple[list[Any], dict[Any, int]]] = {
    "empty": ([], {None: -32600}),
    "initialize inside": ([initialize("2025-03-26") | {"id": 9}, {"jsonrpc": "2.0", "id": 10, "method": "ping"}],
                          {9: -32600, 10: 0}),
    "notifications only": ([INITIALIZED, {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}], {}),
    "a batch in a batch": ([[{"jsonrpc": "2.0", "id": 11, "method": "ping"}]], {None: -32600}),
    "too long": ([{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(MAX_BATCH + 1)],
                 dict.fromkeys(range(MAX_BATCH + 1), -32600)),
}  # fmt: skip


def codes(answer: Any) -> dict[Any, int]:
    answers = answer if isinstance(answer, list) else [answer]
    return {a["id"]: a["error"]["code"] if "error" in a else 0 for a in answers}


@pytest.mark.parametrize("edge", list(EDGES))
async def test_over_stdio_each_edge_of_a_batch_is_answered_as_json_rpc_says(emulator: Emulator, edge: str) -> None:
    batch, expected = EDGES[edge]
    async with stdio(emulator, "2025-03-26") as server:
        await server.send(batch)
        await server.send(PING)  # what comes after the batch's answer (if any) is the ping's
        got: dict[Any, int] = {}
        while (answer := await server.line()) != {"jsonrpc": "2.0", "id": "after", "result": {}}:
            got |= codes(answer)
    assert got == expected


@pytest.fixture
def http_url(emulator: Emulator, clock: FakeClock) -> Iterator[str]:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http")
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
        yield server.url


async def http_session(http: httpx2.AsyncClient, version: str) -> dict[str, str]:
    """Initialize a stateful session of `version`; the headers its later requests carry (2025-03-26: no version)."""
    answer = await http.post("/mcp", json=initialize(version))
    assert answer.status_code == 200, answer.text
    headers = {"Mcp-Session-Id": answer.headers["mcp-session-id"]}
    if version != "2025-03-26":
        headers["MCP-Protocol-Version"] = version
    assert (await http.post("/mcp", json=INITIALIZED, headers=headers)).status_code == 202
    return headers


ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.mark.parametrize("version", TAKES)
async def test_over_http_a_batch_is_taken_and_answered_as_one_array(
    http_url: str, state: EmulatorState, version: str
) -> None:
    async with httpx2.AsyncClient(base_url=http_url, headers=ACCEPT, timeout=30) as http:
        headers = await http_session(http, version)
        response = await http.post("/mcp", json=BATCH, headers=headers)
    assert response.status_code == 200, response.text
    assert_taken(response.json(), state)


@pytest.mark.parametrize("version", REFUSES)
async def test_over_http_a_batch_is_refused_where_the_version_has_none(
    http_url: str, state: EmulatorState, version: str
) -> None:
    async with httpx2.AsyncClient(base_url=http_url, headers=ACCEPT, timeout=30) as http:
        headers = await http_session(http, version)
        response = await http.post("/mcp", json=BATCH, headers=headers)
    assert response.status_code == 400
    assert {a["id"] for a in response.json()} == {1, "two", 3}
    assert all(version in a["error"]["message"] for a in response.json())
    assert state.count("workspaces") == 0


@pytest.mark.parametrize("edge", list(EDGES))
async def test_over_http_each_edge_of_a_batch_is_answered_as_json_rpc_says(http_url: str, edge: str) -> None:
    batch, expected = EDGES[edge]
    async with httpx2.AsyncClient(base_url=http_url, headers=ACCEPT, timeout=30) as http:
        headers = await http_session(http, "2025-03-26")
        response = await http.post("/mcp", json=batch, headers=headers)
    assert response.status_code == (202 if not expected else 200 if 0 in expected.values() else 400), response.text
    assert (codes(response.json()) if response.content else {}) == expected
