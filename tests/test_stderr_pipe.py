"""A client that never reads the server's stderr is answered all the same; the logs it left unread are counted.

Issue 31, row 5: after ~64 KB of logs (a pipe's size) the server stopped answering, pings included, because a log
line written to a full pipe blocked the event loop. Real subprocesses, over stdio and Streamable HTTP, whose
stderr pipe nobody reads while hundreds of failing calls log.
"""

from __future__ import annotations

import re
import subprocess
import threading
from typing import Any

import anyio
import httpx2
from mcp import Client

from server.observe.backlog import BACKLOG_BYTES
from server.sandbox import Emulator, EmulatorState
from tests.results import error
from tests.servers import free_port
from tests.test_shutdown import HELLO, Server, call
from tests.test_stdio import COMMAND, params

# A call that goes upstream, fails and logs, without spending anything: about 1.3 KB of log at DEBUG, so these are
# about twice a pipe (64 KB) and the backlog (BACKLOG_BYTES) together.
MISSING = {"id": "00000000-0000-4000-8000-000000000000"}
CALLS = 2 * (64 * 1024 + BACKLOG_BYTES) // 1300
DROPPED = re.compile(rb"(\d+) log record\(s\) dropped: stderr was not being read")


def dropped(stderr: bytes) -> int:
    return sum(int(n) for n in DROPPED.findall(stderr))


def test_over_stdio_every_call_and_ping_is_answered_while_stderr_is_full(
    emulator: Emulator, state: EmulatorState
) -> None:
    state.set_rate_limit(100_000, 3600)  # every call goes upstream, and logs its request
    server = Server("--log-level", "DEBUG", env=emulator.environment(), read_stderr=False)
    messages: list[dict[str, Any]] = [*HELLO, *(call(n, "get_snapshot", MISSING) for n in range(1, CALLS + 1))]
    messages.append({"jsonrpc": "2.0", "id": "ping", "method": "ping"})
    # From a thread: were the server stuck, a write to its full stdin would block the test, not fail it.
    threading.Thread(target=server.send, args=messages, daemon=True).start()
    for n in range(1, CALLS + 1):
        answer = server.wait_answer(n)
        assert answer["result"]["isError"] is True, answer
        assert answer["result"]["_meta"]["io.flashsnap/error"]["code"] == "not_found"
    assert server.wait_answer("ping")["result"] == {}
    assert state.count("snapshot_get") == CALLS

    server.read_stderr()  # a reader at last: the backlog is written, then how many records were dropped
    assert server.process.stdin is not None
    server.process.stdin.close()
    assert server.exit_code() == 0
    assert dropped(server.stderr) > 0, server.stderr[-2000:]
    assert b"tool get_snapshot: not_found" in server.stderr


async def test_over_http_every_call_is_answered_while_stderr_is_full(emulator: Emulator, state: EmulatorState) -> None:
    state.set_rate_limit(100_000, 3600)
    port = free_port()
    command = [COMMAND, "--transport", "streamable-http", "--port", str(port), "--log-level", "DEBUG"]
    environ = {**(params().env or {}), **emulator.environment(), "FLASHSNAP_HTTP_STATELESS": "1"}
    process = await anyio.open_process(
        command, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )  # nobody reads its stderr until the end
    stderr = b""
    async with process:
        try:
            with anyio.fail_after(60):
                async with httpx2.AsyncClient() as http:
                    while True:  # up when /healthz answers
                        try:
                            if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                                break
                        except httpx2.TransportError:
                            assert process.returncode is None, "the server exited during start-up"
                            await anyio.sleep(0.05)
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    for _ in range(CALLS):
                        assert error(await client.call_tool("get_snapshot", MISSING))["code"] == "not_found"
                    assert (await client.list_tools()).tools  # a request that is not a tool call, answered too
            assert state.count("snapshot_get") == CALLS
        finally:
            process.terminate()
            assert process.stderr is not None
            with anyio.fail_after(30):  # read at last: the backlog, the count of the dropped, then the shutdown
                async for chunk in process.stderr:
                    stderr += chunk
    assert dropped(stderr) > 0, stderr[-2000:]
