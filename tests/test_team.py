"""Named tokens over real HTTP (FLASHSNAP_AUTH=tokens): each principal sees its policy, a call outside its scopes
gets the 403 step-up challenge with nothing sent upstream, and what one principal starts no other can use."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

import tools
from server.auth import scopes
from server.cli import status
from server.clock import FakeClock
from server.config import Settings
from server.runtime import open_state
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from server.transports.identity import FORBIDDEN
from tests.conftest import MODES, NO_QUESTIONS
from tests.results import data, error
from tests.test_consent import SNAPSHOT, sse_data, still_there
from tests.transports import http_client

NAMES = ("alice", "reader", "writer", "ops", "carol", "dan", "spender")
TOKENS = {name: f"{name}-token-0123456789abcdef" for name in NAMES}
GENERATE = {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 16}
LEGACY, MODERN = "2025-11-25", "2026-07-28"


def entry(name: str, *scope: str, **extra: Any) -> str:
    lines = ["[[principals]]", f'name = "{name}"', f'token_sha256 = "{sha(TOKENS[name])}"']
    if scope:
        lines.append(f"scopes = {json.dumps(list(scope))}")
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# alice takes [defaults]; reader may only read; writer may read and write; ops reads and scrapes /metrics;
# dan has alice's scopes and is never asked first; spender may spend but not read.
TEAM = (
    '[defaults]\nscopes = ["flashsnap:read", "flashsnap:write", "flashsnap:spend"]\n'
    + entry("alice")
    + entry("reader", scopes.READ)
    + entry("writer", scopes.READ, scopes.WRITE)
    + entry("ops", scopes.READ, scopes.ADMIN)
    + entry("dan", confirm_words=0, confirm_delete=False)
    + entry("spender", scopes.SPEND)
)

ServeTeam = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def team_file(tmp_path: Path) -> Path:
    path = tmp_path / "team.toml"
    path.write_text(TEAM)
    return path


@pytest.fixture
def serve_team(emulator: Emulator, clock: FakeClock, team_file: Path) -> ServeTeam:
    """`async with serve_team(**settings) as url`: flashsnap-mcp in tokens mode with `team_file`, on loopback."""

    @asynccontextmanager
    async def serve(transport: str = "streamable-http", **overrides: Any) -> AsyncIterator[str]:
        environ = {**NO_QUESTIONS, **emulator.environment(), "FLASHSNAP_TOOLSETS": "all"}
        settings = Settings.from_env(environ, transport=transport, auth="tokens", team_file=team_file, **overrides)
        with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
            yield server.url

    return serve


def as_(name: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKENS[name]}"}, timeout=30)


def upstream_requests(state: EmulatorState) -> int:
    with state.lock:
        return sum(state.requests.values())


def allowed(policy: set[str]) -> set[str]:
    return {spec.name for spec in tools.ALL if spec.scope in policy}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "policy"),
    [
        ("alice", {scopes.READ, scopes.WRITE, scopes.SPEND}),
        ("reader", {scopes.READ}),
        ("writer", {scopes.READ, scopes.WRITE}),
        ("ops", {scopes.READ, scopes.ADMIN}),
        ("spender", {scopes.SPEND}),
    ],
)
async def test_each_principal_lists_what_its_policy_allows(
    serve_team: ServeTeam, name: str, policy: set[str], mode: str
) -> None:
    async with serve_team() as url, http_client(url, mode, http=as_(name)) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
    assert listed == allowed(policy)
    assert listed  # every principal here may call some tool


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "tool", "arguments", "needed"),
    [
        ("reader", "generate", GENERATE, scopes.SPEND),
        ("reader", "snapshot", SNAPSHOT, scopes.WRITE),
        ("writer", "generate", GENERATE, scopes.SPEND),
        ("writer", "search_snapshots", {"query": "x"}, scopes.SPEND),
        ("reader", "delete_snapshot", {"id": "00000000-0000-4000-8000-000000000000"}, scopes.WRITE),
    ],
)
async def test_a_call_outside_the_principals_scopes_gets_403_and_nothing_is_sent(
    serve_team: ServeTeam, state: EmulatorState, name: str, tool: str, arguments: dict[str, Any], needed: str, mode: str
) -> None:
    async with serve_team() as url, http_client(url, mode, http=as_(name)) as client:
        before = upstream_requests(state)
        with pytest.raises(MCPError) as refused:
            await client.call_tool(tool, arguments)
        assert refused.value.error.code == FORBIDDEN
        assert needed in refused.value.error.message
        assert upstream_requests(state) == before


@pytest.mark.parametrize("version", [LEGACY, MODERN])
async def test_the_403_carries_the_step_up_challenge(serve_team: ServeTeam, state: EmulatorState, version: str) -> None:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "generate", "arguments": GENERATE}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": version}
    if version == MODERN:
        headers |= {"Mcp-Method": "tools/call", "Mcp-Name": "generate"}
    async with serve_team(http_stateless=True) as url, as_("reader") as http:
        before = upstream_requests(state)
        answer = await http.post(f"{url}/mcp", json=call, headers=headers)
    assert answer.status_code == 403
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope", scope="flashsnap:spend"')
    assert answer.json()["id"] == 7
    assert answer.json()["error"]["code"] == FORBIDDEN
    assert upstream_requests(state) == before


@pytest.mark.parametrize(("header", "status"), [("list_models", 400), ("generate", 200)])
async def test_the_sdk_refuses_an_mcp_name_header_that_disagrees_with_the_body(
    serve_team: ServeTeam, state: EmulatorState, header: str, status: int
) -> None:
    """The scope is judged from the body; a client cannot pass a spending call off as a read by its headers: the
    SDK refuses the disagreeing header (400) and nothing is sent; the agreeing one goes through."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"name": "generate", "arguments": GENERATE, "_meta": meta}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": header,
    }
    async with serve_team(http_stateless=True) as url, as_("alice") as http:
        before = upstream_requests(state)
        answer = await http.post(f"{url}/mcp", json=call, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 400:
        assert "mcp-name" in answer.text.lower()
        assert upstream_requests(state) == before
    else:
        assert upstream_requests(state) > before


@pytest.mark.parametrize(("name", "status"), [("ops", 200), ("alice", 403), ("reader", 403)])
async def test_metrics_need_the_admin_scope(serve_team: ServeTeam, name: str, status: int) -> None:
    async with serve_team() as url, as_(name) as http:
        answer = await http.get(f"{url}/metrics")
    assert answer.status_code == status
    if status == 403:
        assert 'scope="flashsnap:admin"' in answer.headers["www-authenticate"]


# No header, an unknown token, another scheme, a scheme alone, and the file's hash itself sent as the token.
@pytest.mark.parametrize(
    "given",
    [None, "Bearer nobody-0123456789abcdef", "Basic YWxpY2U6eA==", "Bearer", f"Bearer {sha(TOKENS['alice'])}"],
)
@pytest.mark.parametrize("path", ["/mcp", "/metrics"])
async def test_a_request_without_a_principals_token_gets_401(
    serve_team: ServeTeam, given: str | None, path: str
) -> None:
    headers = {"Authorization": given} if given else {}
    async with serve_team() as url, httpx2.AsyncClient() as http:
        answer = await http.post(f"{url}{path}", json={}, headers=headers)
        healthy = await http.get(f"{url}/healthz", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert healthy.status_code == 200  # the health check stays open


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
JSON_AND_SSE = {"Accept": "application/json, text/event-stream"}


async def open_session(http: httpx2.AsyncClient, url: str) -> str:
    opened = await http.post(f"{url}/mcp", json=INITIALIZE, headers=JSON_AND_SSE)
    assert opened.status_code == 200, opened.text
    session: str = opened.headers["mcp-session-id"]
    headers = {**JSON_AND_SSE, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    done = await http.post(
        f"{url}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    assert done.status_code == 202
    return session


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_another_principals_session_id_is_not_found(serve_team: ServeTeam, method: str) -> None:
    async with serve_team() as url, as_("alice") as alice, as_("writer") as writer:
        session = await open_session(alice, url)
        headers = {**JSON_AND_SSE, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        body = json.dumps(listing).encode() if method == "POST" else None
        stolen = await writer.request(method, f"{url}/mcp", content=body, headers=headers)
        assert stolen.status_code == 404
        mine = await alice.post(f"{url}/mcp", json=listing, headers=headers)  # the owner's session lives on
        assert mine.status_code == 200
        assert sse_data(mine)["result"]["tools"]


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
}
YES = {"confirm": {"action": "accept", "content": {"confirm": True}}}


async def modern_call(http: httpx2.AsyncClient, url: str, name: str, args: dict[str, Any], **more: Any) -> Any:
    """A hand-written 2026-07-28 tools/call, its JSON-RPC answer."""
    params = {"name": name, "arguments": args, "_meta": MODERN_META, **more}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {**JSON_AND_SSE, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}
    response = await http.post(f"{url}/mcp", json=body, headers=headers)
    ctype = response.headers.get("content-type", "")
    return response.json() if ctype.startswith("application/json") else sse_data(response)


async def test_another_principal_cannot_answer_a_sealed_question(serve_team: ServeTeam, state: EmulatorState) -> None:
    """2026-07-28: alice is asked before deleting; writer, who may delete too, replays alice's sealed question
    with a yes. The seal binds it to alice: refused, nothing deleted. Alice's own yes then deletes."""
    async with serve_team(http_stateless=True) as url, as_("alice") as alice, as_("writer") as writer:
        made = await modern_call(alice, url, "snapshot", SNAPSHOT)
        snapshot_id = made["result"]["structuredContent"]["id"]
        asked = await modern_call(alice, url, "delete_snapshot", {"id": snapshot_id})
        sealed = asked["result"]["requestState"]
        stolen = await modern_call(writer, url, "delete_snapshot", {"id": snapshot_id}, inputResponses=YES,
                                   requestState=sealed)  # fmt: skip
        assert "error" in stolen, stolen
        assert state.count("snapshot_delete") == 0
        assert still_there(state, snapshot_id)
        done = await modern_call(alice, url, "delete_snapshot", {"id": snapshot_id}, inputResponses=YES,
                                 requestState=sealed)  # fmt: skip
        assert done["result"]["structuredContent"] == {"id": snapshot_id, "deleted": True}
    assert state.count("snapshot_delete") == 1


async def test_another_principal_cannot_answer_a_pushed_question(serve_team: ServeTeam, state: EmulatorState) -> None:
    """2025-11-25: the question to alice is pushed on her session's stream; writer posts a yes with its id to her
    session (what let the victim's delete go through with one shared token): 404, nothing deleted."""
    opening = json.loads(json.dumps(INITIALIZE))
    opening["params"]["capabilities"] = {"elicitation": {}}
    async with serve_team() as url, as_("alice") as alice, as_("writer") as writer:
        opened = await alice.post(f"{url}/mcp", json=opening, headers=JSON_AND_SSE)
        session = opened.headers["mcp-session-id"]
        headers = {**JSON_AND_SSE, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await alice.post(f"{url}/mcp", json=initialized, headers=headers)
        made = sse_data(await alice.post(f"{url}/mcp", json=tool_call(2, "snapshot", SNAPSHOT), headers=headers))
        snapshot_id = made["result"]["structuredContent"]["id"]
        call = tool_call(3, "delete_snapshot", {"id": snapshot_id})
        async with alice.stream("POST", f"{url}/mcp", json=call, headers=headers) as answer:
            lines = answer.aiter_lines()
            question = await next_message(lines)
            assert question["method"] == "elicitation/create"
            yes = {"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept", "content": {"confirm": True}}}
            stolen = await writer.post(f"{url}/mcp", json=yes, headers=headers)
            assert stolen.status_code == 404
            assert state.count("snapshot_delete") == 0
            no = {"jsonrpc": "2.0", "id": question["id"], "result": {"action": "decline"}}
            assert (await alice.post(f"{url}/mcp", json=no, headers=headers)).status_code == 202
            result = await next_message(lines)
            assert result["id"] == 3
            assert result["result"]["isError"] is True
    assert state.count("snapshot_delete") == 0
    assert still_there(state, snapshot_id)


def tool_call(msg_id: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {"name": name, "arguments": args}}


async def next_message(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next JSON-RPC message on an SSE response (progress notifications skipped)."""
    async for line in lines:
        if line.startswith("data:") and line.removeprefix("data:").strip():
            message: dict[str, Any] = json.loads(line.removeprefix("data:"))
            if message.get("method") != "notifications/progress":
                return message
    raise AssertionError("the stream ended without a message")


async def test_each_principal_is_asked_by_its_own_thresholds(serve_team: ServeTeam, state: EmulatorState) -> None:
    """The server asks above 1,000 words and before every deletion; dan's entry says never, alice has the
    server's. Neither client can ask, so a question is a confirmation_required result."""
    big = {**GENERATE, "max_tokens": 4000}  # 3,001 words
    async with serve_team(confirm_words=1000, confirm_delete=True) as url:
        async with http_client(url, "legacy", http=as_("alice")) as alice:
            snapshot_id = data(await alice.call_tool("snapshot", SNAPSHOT))["id"]
            assert error(await alice.call_tool("generate", big))["code"] == "confirmation_required"
            asked = await alice.call_tool("delete_snapshot", {"id": snapshot_id})
            assert error(asked)["code"] == "confirmation_required"
            assert state.count("chat") == 0
            assert still_there(state, snapshot_id)
        async with http_client(url, "legacy", http=as_("dan")) as dan:
            assert data(await dan.call_tool("generate", big))["text"]
            assert data(await dan.call_tool("delete_snapshot", {"id": snapshot_id}))["deleted"] is True
    assert state.count("chat") == 1
    assert not still_there(state, snapshot_id)


async def test_one_principals_sessions_cannot_lock_the_others_out(serve_team: ServeTeam) -> None:
    """alice may hold 2 sessions: a third closes her own longest-idle one; with both busy (each holding its
    stream open) her next is refused, while writer still gets in."""
    async with serve_team(max_sessions_per_principal=2) as url, as_("alice") as alice, as_("writer") as writer:
        first, second = await open_session(alice, url), await open_session(alice, url)
        third = await open_session(alice, url)
        assert await listing(alice, url, first) == 404  # her own longest-idle went
        assert await listing(alice, url, second) == 200
        assert await listing(alice, url, third) == 200
        stream = [{"Accept": "text/event-stream", "Mcp-Session-Id": sid, "MCP-Protocol-Version": LEGACY}
                  for sid in (second, third)]  # fmt: skip
        async with (
            alice.stream("GET", f"{url}/mcp", headers=stream[0]) as one,
            alice.stream("GET", f"{url}/mcp", headers=stream[1]) as two,
        ):
            assert one.status_code == two.status_code == 200
            refused = await alice.post(f"{url}/mcp", json=INITIALIZE, headers=JSON_AND_SSE)
            assert refused.status_code == 503
            theirs = await open_session(writer, url)
            assert await listing(writer, url, theirs) == 200


async def listing(http: httpx2.AsyncClient, url: str, session: str) -> int:
    headers = {**JSON_AND_SSE, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    answer = await http.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, headers=headers)
    return answer.status_code


async def test_metrics_and_status_name_each_principal(serve_team: ServeTeam, clock: FakeClock) -> None:
    """What each principal did, by the team file's names: /metrics (for ops, who holds admin) and `status`."""
    async with serve_team() as url:
        async with http_client(url, "legacy", http=as_("alice")) as alice:
            await alice.call_tool("list_workspaces", {})
            await alice.call_tool("list_workspaces", {})
        async with http_client(url, "legacy", http=as_("reader")) as reader:
            with pytest.raises(MCPError):
                await reader.call_tool("generate", GENERATE)
        async with as_("ops") as ops:
            scraped = (await ops.get(f"{url}/metrics")).text
    assert 'flashsnap_principal_tool_calls_total{outcome="ok",principal="alice",tool="list_workspaces"} 2.0' in scraped
    assert 'flashsnap_scope_refusals_total{principal="reader",scope="flashsnap:spend"} 1.0' in scraped
    assert TOKENS["alice"] not in scraped
    # Each principal's turns at the gates: its requests let out and the seconds it waited for them.
    assert 'flashsnap_principal_sent_total{principal="alice"}' in scraped
    assert 'flashsnap_principal_queued{principal="alice"} 0.0' in scraped
    # `status` reads the shared store as the command does, on the test's clock (the documents' times are on it).
    store = await open_state(Settings.from_env({}), clock)
    try:
        view = await status.gather(store, clock)
        clock.advance(86_400)  # a UTC day later: today's counts start afresh, the last call is still named
        next_day = await status.gather(store, clock)
    finally:
        await store.aclose()
    principals = view["principals"]
    assert set(principals) == {"alice"}  # reader's call never ran: the 403 came first
    assert principals["alice"]["calls"] == {"ok": 2}
    shown = status.render(view).split("principals (tool calls today, UTC, by outcome) and their turns at the gates")[1]
    assert "alice" in shown
    assert "ok 2" in shown
    assert principals["alice"]["sent"] >= 2  # each list_workspaces reached neuroflash through its gate
    assert f"sent {principals['alice']['sent']}" in shown
    assert "queued 0" in shown
    assert next_day["principals"]["alice"]["calls"] == {}
    assert next_day["principals"]["alice"]["last_call"] == principals["alice"]["last_call"]
    assert "alice        none; last" in status.render(next_day)
    assert next_day["principals"]["alice"]["sent"] == 0  # today's turns start afresh too


@pytest.mark.parametrize("name", ["alice", "reader"])
async def test_sse_lists_what_the_policy_allows(serve_team: ServeTeam, name: str) -> None:
    async with serve_team("sse") as url:
        headers = {"Authorization": f"Bearer {TOKENS[name]}"}
        async with Client(sse_client(f"{url}/sse", headers=headers), mode="legacy") as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
    assert listed == allowed({scopes.READ} if name == "reader" else set(scopes.CALLING))


async def test_over_sse_a_session_is_its_principals_and_a_call_outside_its_scopes_gets_403(
    serve_team: ServeTeam, state: EmulatorState
) -> None:
    async with (
        serve_team("sse") as url,
        as_("reader") as reader,
        as_("writer") as writer,
        reader.stream("GET", f"{url}/sse", headers={"Accept": "text/event-stream"}) as stream,
    ):
        lines = stream.aiter_lines()
        endpoint = await next_data(lines)
        assert endpoint.startswith("/messages/?session_id=")
        stolen = await writer.post(f"{url}{endpoint}", json=INITIALIZE)
        assert stolen.status_code == 404
        opened = await reader.post(f"{url}{endpoint}", json=INITIALIZE)
        assert opened.status_code == 202
        before = upstream_requests(state)
        refused = await reader.post(f"{url}{endpoint}", json=tool_call(2, "generate", GENERATE))
        assert refused.status_code == 403
        assert 'scope="flashsnap:spend"' in refused.headers["www-authenticate"]
        assert upstream_requests(state) == before


async def next_data(lines: AsyncIterator[str]) -> str:
    """The next `data:` line of an SSE stream."""
    async for line in lines:
        if line.startswith("data:"):
            return line.removeprefix("data:").strip()
    raise AssertionError("the stream ended")


# Every method that reads without a tool: resources, prompts and completions need read.
READING = [
    ("resources/list", {}),
    ("resources/templates/list", {}),
    ("resources/read", {"uri": "flashsnap://quota"}),
    ("prompts/list", {}),
    ("prompts/get", {"name": "write_with_brand_voice", "arguments": {}}),
    ("completion/complete", {"ref": {"type": "ref/prompt", "name": "x"}, "argument": {"name": "a", "value": ""}}),
]


@pytest.mark.parametrize(("method", "params"), READING)
async def test_resources_prompts_and_completions_need_the_read_scope(
    serve_team: ServeTeam, state: EmulatorState, method: str, params: dict[str, Any]
) -> None:
    async with serve_team() as url, as_("spender") as spender, as_("reader") as reader:
        spender_session, reader_session = await open_session(spender, url), await open_session(reader, url)
        before = upstream_requests(state)
        request = {"jsonrpc": "2.0", "id": 5, "method": method, "params": params}
        refused = await spender.post(f"{url}/mcp", json=request, headers=session_headers(spender_session))
        assert refused.status_code == 403
        assert 'scope="flashsnap:read"' in refused.headers["www-authenticate"]
        assert upstream_requests(state) == before
        allowed_ = await reader.post(f"{url}/mcp", json=request, headers=session_headers(reader_session))
        assert allowed_.status_code == 200


def session_headers(session: str) -> dict[str, str]:
    return {**JSON_AND_SSE, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}


async def test_the_audit_log_names_who_was_refused_and_never_a_request_without_a_token(
    serve_team: ServeTeam, tmp_path: Path
) -> None:
    """A presented token refused: one `denied` record with no principal; a call outside the principal's scopes:
    one `denied` record naming the principal and the tool; no token at all: nothing written. An allowed call
    is recorded under the team file's name."""
    audit = tmp_path / "audit.jsonl"
    async with serve_team(audit_log=audit) as url:
        async with httpx2.AsyncClient(timeout=30) as anonymous:
            assert (await anonymous.post(f"{url}/mcp", json={})).status_code == 401
        async with httpx2.AsyncClient(headers={"Authorization": "Bearer not-a-team-token-0000"}, timeout=30) as bad:
            assert (await bad.post(f"{url}/mcp", json={})).status_code == 401
        async with http_client(url, "auto", http=as_("reader")) as client:
            with pytest.raises(MCPError):
                await client.call_tool("generate", GENERATE)
            await client.call_tool("list_workspaces", {})
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["principal"], r["method"], r["tool"], r["outcome"]) for r in records] == [
        (None, "POST /mcp", None, "denied"),
        ("reader", "tools/call", "generate", "denied"),
        ("reader", "tools/call", "list_workspaces", "ok"),
    ]
    assert "not-a-team-token" not in audit.read_text()


async def test_a_batch_is_judged_message_by_message_for_scopes(serve_team: ServeTeam, state: EmulatorState) -> None:
    """2025-03-26 takes batches: each message of one meets the same scope check as a message alone, so a batch
    cannot carry a call its principal may not make."""
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "generate", "arguments": GENERATE}},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
    ]
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-03-26"}
    async with serve_team(http_stateless=True) as url, as_("reader") as http:
        before = upstream_requests(state)
        answer = await http.post(f"{url}/mcp", json=batch, headers=headers)
    by_id = {item["id"]: item for item in answer.json()}
    assert by_id[1]["error"]["code"] == FORBIDDEN
    assert "result" in by_id[2]
    assert upstream_requests(state) == before
