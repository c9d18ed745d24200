"""Abandoned HTTP sessions cannot lock anyone out: at the limit the longest-idle one is closed, not the newcomer."""

from __future__ import annotations

import anyio
import httpx2

from tests.results import data
from tests.test_http import ServeHTTP, connect, serve_http  # noqa: F401 - the fixture

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "abandon", "version": "1"}},
}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


async def test_a_full_session_table_closes_the_longest_idle_session_not_the_new_client(
    serve_http: ServeHTTP,  # noqa: F811
) -> None:
    async with (
        serve_http(max_sessions=3) as url,
        httpx2.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as http,
    ):
        with anyio.fail_after(60):
            # Three sessions opened and abandoned: the table is full.
            abandoned = []
            for _ in range(3):
                response = await http.post("/mcp", json=INITIALIZE)
                assert response.status_code == 200
                abandoned.append(response.headers["mcp-session-id"])
            # A well-behaved client still connects, and works.
            async with connect(url, "streamable-http", "legacy") as client:
                assert data(await client.call_tool("list_workspaces", {}))["workspaces"]
            # The oldest abandoned session made room; the younger ones were left alone.
            gone = await http.post("/mcp", json=LIST, headers={"mcp-session-id": abandoned[0]})
            assert gone.status_code == 404
            kept = await http.post("/mcp", json=LIST, headers={"mcp-session-id": abandoned[2]})
            assert kept.status_code == 200
