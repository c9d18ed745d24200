"""Every JSON-RPC request that carries an id gets an answer, over stdio and HTTP, however malformed it is.

The SDK's client cannot send these, so raw lines go to a real `flashsnap-mcp` subprocess and raw POSTs
to the real HTTP app.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

import tools
from server.tooling.spec import DEFAULT_TOOLSETS
from tests.test_http import ServeHTTP, serve_http  # noqa: F401 - the fixture
from tests.test_stdio import COMMAND, params

DEEP = "[" * 5_000 + "]" * 5_000
# (raw message, its id, the JSON-RPC error code it must be answered with)
MALFORMED: dict[str, tuple[str, Any, int]] = {
    "lone surrogate in an argument": (
        '{"jsonrpc":"2.0","id":11,"method":"tools/call",'
        '"params":{"name":"search_snapshots","arguments":{"query":"a\\ud800b"}}}',
        11,
        -32602,
    ),
    "params as an array": ('{"jsonrpc":"2.0","id":"twelve","method":"tools/call","params":[1,2]}', "twelve", -32602),
    "jsonrpc 1.0": ('{"jsonrpc":"1.0","id":13,"method":"tools/list"}', 13, -32600),
    "a batch": ('[{"jsonrpc":"2.0","id":14,"method":"tools/list"}]', 14, -32600),
    "nested 5,000 deep": (
        '{"jsonrpc":"2.0","id":15,"method":"tools/call",'
        '"params":{"name":"search_snapshots","arguments":{"query":' + DEEP + "}}}",
        15,
        -32600,
    ),
    "cut-off JSON": ('{"jsonrpc":"2.0","id":16,"method":"tools/list",', 16, -32700),
    "a NaN literal": (
        '{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"snapshot","arguments":{"v":NaN}}}',
        17,
        -32700,
    ),
}

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


async def _send(process: Process, line: str) -> None:
    assert process.stdin is not None
    await process.stdin.send(line.encode() + b"\n")


async def _answer(lines: BufferedByteReceiveStream) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(await lines.receive_until(b"\n", 10_000_000))
    return answer


async def test_every_malformed_request_with_an_id_is_answered_over_stdio() -> None:
    command = [COMMAND, "--sandbox", "--log-level", "WARNING"]
    env = params().env
    with anyio.fail_after(60):
        async with await anyio.open_process(command, env=env, stderr=None) as process:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            await _send(process, json.dumps(INITIALIZE))
            assert (await _answer(lines))["id"] == 0
            await _send(process, '{"jsonrpc":"2.0","method":"notifications/initialized"}')
            for name, (raw, msg_id, code) in MALFORMED.items():
                await _send(process, raw)
                answer = await _answer(lines)
                assert answer["id"] == msg_id, name
                assert answer["error"]["code"] == code, name
            # ... and the server goes on serving.
            await _send(process, '{"jsonrpc":"2.0","id":99,"method":"tools/list"}')
            answer = await _answer(lines)
            assert answer["id"] == 99
            assert len(answer["result"]["tools"]) == len([t for t in tools.ALL if t.toolset in DEFAULT_TOOLSETS])
            process.terminate()


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_every_malformed_request_with_an_id_is_answered_over_http(serve_http: ServeHTTP, name: str) -> None:  # noqa: F811
    raw, msg_id, code = MALFORMED[name]
    # As a 2025-11-25 client sends them: with the version header (without one, 2025-03-26 is assumed, which takes
    # batches: tests/test_batches.py).
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    async with serve_http() as url, httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        with anyio.fail_after(30):
            response = await http.post("/mcp", content=raw.encode("utf-8", "surrogatepass"))
            assert response.status_code == 400
            answer = response.json()
            assert answer["id"] == msg_id
            assert answer["error"]["code"] == code
            assert "pydantic" not in response.text
            # ... and the server goes on serving.
            ok = await http.post("/mcp", json=INITIALIZE)
            assert ok.status_code == 200
