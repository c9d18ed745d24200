"""Streamable HTTP answers every form of `Accept` real clients send, on both protocol versions, stateful or not.

JSON-only clients get JSON, stream-only clients a stream, no `Accept` gets JSON (RFC 9110 lets a server answer
what it can); a client that takes only JSON cannot receive a pushed question, so it is treated as one that
cannot ask (`confirmation_required`), never left waiting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.accept import wants
from server.transports.http import build_http_app
from tests.conftest import NO_QUESTIONS
from tests.test_consent import DEFAULT, SNAPSHOT

JSON, SSE = "application/json", "text/event-stream"

# (id, the Accept header lines sent, the form of the answer); "": the SDK's own choice for a client taking both.
FORMS: list[tuple[str, list[str], str]] = [
    ("none", [], JSON),
    ("json", ["application/json"], JSON),
    ("json-params", ["application/json; charset=utf-8"], JSON),
    ("json-upper", ["APPLICATION/JSON"], JSON),
    ("application-wildcard", ["application/*"], JSON),
    ("other-only", ["text/html"], JSON),
    ("sse", ["text/event-stream"], SSE),
    ("text-wildcard", ["text/*"], SSE),
    ("both", ["application/json, text/event-stream"], ""),
    ("both-q", ["application/json;q=0.9, text/event-stream;q=1"], ""),
    ("two-lines", ["application/json", "text/event-stream"], ""),
    ("any", ["*/*"], ""),
]
MODERN = "2026-07-28"
LEGACY = "2025-11-25"


def answer(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC reply, from a JSON body or the last data line of an event stream."""
    if response.headers["content-type"].startswith(JSON):
        reply: dict[str, Any] = response.json()
        return reply
    lines = [line.removeprefix("data:").strip() for line in response.text.splitlines() if line.startswith("data:")]
    reply = json.loads(lines[-1])
    return reply


@asynccontextmanager
async def server(emulator: Emulator, clock: FakeClock, stateless: bool, **env: str) -> AsyncIterator[str]:
    environ = {**NO_QUESTIONS, **emulator.environment(), **env}
    settings = Settings.from_env(environ, transport="streamable-http", toolsets=("all",), http_stateless=stateless)
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as running, anyio.fail_after(30):
        yield f"{running.url}/mcp"


def bare_client() -> httpx2.AsyncClient:
    """An HTTP client that sends no `Accept` of its own (httpx adds `*/*` by default)."""
    http = httpx2.AsyncClient(timeout=30)
    del http.headers["accept"]
    return http


def headers(lines: list[str], **more: str) -> list[tuple[str, str]]:
    return [("content-type", JSON), *(("accept", line) for line in lines), *more.items()]


async def legacy_session(
    http: httpx2.AsyncClient, url: str, lines: list[str], capabilities: dict[str, Any]
) -> dict[str, str]:
    """Initialize a 2025-11-25 session with this `Accept`; the headers its later requests carry."""
    hello = {"protocolVersion": LEGACY, "capabilities": capabilities, "clientInfo": {"name": "t", "version": "1"}}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}
    response = await http.post(url, json=init, headers=headers(lines))
    assert response.status_code == 200, response.text
    assert answer(response)["result"]["protocolVersion"] == LEGACY
    later = {"mcp-protocol-version": LEGACY}
    if session := response.headers.get("mcp-session-id"):
        later["mcp-session-id"] = session
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                           headers=headers(lines, **later))  # fmt: skip
    assert done.status_code == 202
    return later


def call(tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.parametrize(("form", "lines", "expected"), FORMS, ids=[f[0] for f in FORMS])
async def test_a_2025_client_is_answered_in_the_form_it_takes(
    emulator: Emulator, clock: FakeClock, form: str, lines: list[str], expected: str, stateless: bool
) -> None:
    async with server(emulator, clock, stateless) as url, bare_client() as http:
        later = await legacy_session(http, url, lines, {})
        response = await http.post(url, json=call("list_workspaces", {}), headers=headers(lines, **later))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(expected)
    reply = answer(response)
    assert reply["id"] == 7
    assert reply["result"]["isError"] is False
    assert reply["result"]["structuredContent"]["workspaces"]


@pytest.mark.parametrize(("form", "lines", "expected"), FORMS, ids=[f[0] for f in FORMS])
async def test_a_2026_client_is_answered_in_the_form_it_takes(
    emulator: Emulator, clock: FakeClock, form: str, lines: list[str], expected: str
) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    more = {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "list_workspaces"}
    async with server(emulator, clock, stateless=True) as url, bare_client() as http:
        response = await http.post(url, json=call("list_workspaces", {}, meta), headers=headers(lines, **more))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(expected)
    reply = answer(response)
    assert reply["id"] == 7
    assert reply["result"]["structuredContent"]["workspaces"]


async def test_a_long_call_answered_as_json_keeps_its_result_and_drops_only_the_progress_notices(
    emulator: Emulator, clock: FakeClock, state: EmulatorState
) -> None:
    """A generate streams progress on an event stream; a JSON-only client gets the one reply, whole."""
    args = {"model": "gpt-4.1-mini", "prompt": "A paragraph on tea.", "max_tokens": 200}
    async with server(emulator, clock, stateless=False) as url, bare_client() as http:
        later = await legacy_session(http, url, [JSON], {})
        request = call("generate", args) | {"params": {"name": "generate", "arguments": args,
                                                        "_meta": {"progressToken": "p"}}}  # fmt: skip
        response = await http.post(url, json=request, headers=headers([JSON], **later))
    assert response.headers["content-type"].startswith(JSON)
    result = response.json()["result"]
    assert result["structuredContent"]["words_used"] > 0
    assert state.count("chat") == 1


@pytest.mark.parametrize(("lines", "asked"), [([JSON], False), ([f"{JSON}, {SSE}"], True)], ids=["json", "both"])
async def test_a_client_taking_only_json_cannot_be_asked_mid_call_so_it_gets_confirmation_required(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, lines: list[str], asked: bool
) -> None:
    """It declared elicitation, on a stateful session: the question would have nowhere to travel."""
    async with server(emulator, clock, stateless=False, **DEFAULT) as url, bare_client() as http:
        later = await legacy_session(http, url, lines, {"elicitation": {}})
        made = await http.post(url, json=call("snapshot", SNAPSHOT), headers=headers(lines, **later))
        snapshot_id = answer(made)["result"]["structuredContent"]["id"]
        if asked:  # the question is pushed on the call's stream: read its first event, then stop
            async with http.stream("POST", url, json=call("delete_snapshot", {"id": snapshot_id}),
                                   headers=headers(lines, **later)) as stream:  # fmt: skip
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        assert json.loads(line[5:])["method"] == "elicitation/create"
                        break
            assert state.count("snapshot_delete") == 0
            return
        response = await http.post(
            url, json=call("delete_snapshot", {"id": snapshot_id}), headers=headers(lines, **later)
        )
    result = response.json()["result"]
    assert result["_meta"]["io.flashsnap/error"]["code"] == "confirmation_required"
    assert state.count("snapshot_delete") == 0


async def test_a_listen_stream_still_needs_a_client_that_takes_a_stream(emulator: Emulator, clock: FakeClock) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    listen = {"jsonrpc": "2.0", "id": 3, "method": "subscriptions/listen", "params": {"_meta": meta}}
    more = {"mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}
    async with server(emulator, clock, stateless=True) as url, bare_client() as http:
        response = await http.post(url, json=listen, headers=headers([JSON], **more))
    assert response.status_code == 406  # a stream by nature: never held open to be read whole


@pytest.mark.parametrize(
    ("accept", "takes"),
    [("", (False, False)), ("*/*", (True, True)), ("Application/JSON;q=1", (True, False)), ("text/*", (False, True))],
)
def test_accept_is_read_as_the_sdk_reads_it(accept: str, takes: tuple[bool, bool]) -> None:
    assert wants(accept) == takes
