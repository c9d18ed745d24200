"""Shutdown over stdio: on stdin's end, SIGTERM or SIGINT the requests already read finish and are answered.

Issue 18, row 6: three tool calls, then stdin closed (`flashsnap-mcp < calls.jsonl`), were all answered
`-32000 Connection closed`. Each test runs a real `flashsnap-mcp` subprocess and speaks JSON-RPC lines to it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import Fault
from tests.test_stdio import params

HELLO: list[dict[str, Any]] = [
    {"jsonrpc": "2.0", "id": 0, "method": "initialize",
     "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]  # fmt: skip
GENERATE = {"model": "gpt-4.1-mini", "prompt": "Write a tagline for a tea shop.", "max_tokens": 30}


def call(n: int | str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


class Server:
    """A `flashsnap-mcp` subprocess over stdio, its answers collected by id as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, read_stderr: bool = True) -> None:
        spec = params(*args, env=env)
        self.process = subprocess.Popen(
            [spec.command, *spec.args], env=spec.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.answers: dict[Any, dict[str, Any]] = {}
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr = b""
        self._stderr_read = threading.Thread(target=self._read_stderr, daemon=True)
        if read_stderr:  # else nobody reads it until `read_stderr()`, as with a careless client
            self._stderr_read.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            if "id" in message and "method" not in message:
                with self._lock:
                    self.answers[message["id"]] = message
                    self._lock.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def read_stderr(self) -> None:
        """Start reading stderr (for a server started with `read_stderr=False`); `stderr` holds it once it exits."""
        self._stderr_read.start()

    def send(self, *messages: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        self.process.stdin.flush()

    def wait_answer(self, n: Any, timeout: float = 30) -> dict[str, Any]:
        with self._lock:
            assert self._lock.wait_for(lambda: n in self.answers, timeout), f"no answer to {n}"
            return self.answers[n]

    def exit_code(self, timeout: float = 30) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        if self._stderr_read.is_alive():
            self._stderr_read.join(timeout)
        return code


def result(answer: dict[str, Any]) -> dict[str, Any]:
    assert "result" in answer, answer
    outcome: dict[str, Any] = answer["result"]
    return outcome


def test_calls_written_before_stdin_closes_are_all_answered_then_the_process_exits_0() -> None:
    server = Server("--sandbox")
    server.send(*HELLO, call(1, "generate", GENERATE), call(2, "list_workspaces", {}), call(3, "list_models", {}))
    assert server.process.stdin is not None
    server.process.stdin.close()  # `flashsnap-mcp < calls.jsonl`
    assert server.exit_code() == 0, server.stderr.decode()
    for n in (1, 2, 3):
        answer = result(server.answers[n])
        assert answer.get("isError") is not True, answer
    assert result(server.answers[1])["structuredContent"]["text"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_generate_lets_it_finish_and_answers_it(
    emulator: Emulator, state: EmulatorState, signum: signal.Signals
) -> None:
    state.latency_s["chat_chunk"] = 0.1  # a generation of about a second
    server = Server(env=emulator.environment())
    server.send(*HELLO, call(1, "generate", GENERATE))
    assert state.wait_until(lambda: len(state.chunk_times) >= 1, 30)  # streaming now
    server.process.send_signal(signum)
    answer = result(server.wait_answer(1))
    assert answer.get("isError") is not True, answer
    assert answer["structuredContent"]["words_used"] > 0
    assert server.exit_code() == 0, server.stderr.decode()
    assert state.streams_completed == 1
    assert state.count("chat") == 1


def test_a_call_the_grace_cuts_off_is_answered_with_maybe_processed_and_the_request_id(
    emulator: Emulator, state: EmulatorState
) -> None:
    state.inject("chat", Fault(stall_after_chunks=1, ping_every_s=0.2))  # a generation that never ends
    server = Server(env={**emulator.environment(), "FLASHSNAP_SHUTDOWN_GRACE_S": "0.5"})
    server.send(*HELLO, call(1, "generate", GENERATE))
    assert state.wait_until(lambda: state.pings_sent >= 1, 30)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    answer = result(server.wait_answer(1))
    assert server.exit_code() == 0, server.stderr.decode()
    assert time.monotonic() - started < 10
    assert answer["isError"] is True
    err = answer["_meta"]["io.flashsnap/error"]
    assert err["code"] == "shutdown"
    assert err["maybe_processed"] is True
    assert err["request_id"]  # neuroflash's x-request-id of the cut generation
    assert "FLASHSNAP_SHUTDOWN_GRACE_S" in err["message"]
    assert state.count("chat") == 1


def test_calls_read_from_a_file_are_all_answered_then_the_process_exits_0(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"  # a regular file, read by a thread rather than the event loop
    messages = (*HELLO, call(1, "list_workspaces", {}), call(2, "list_models", {}), call(3, "check_quota", {}))
    calls.write_bytes(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
    spec = params("--sandbox")
    with calls.open("rb") as stdin:
        done = subprocess.run(
            [spec.command, *spec.args], env=spec.env, stdin=stdin, capture_output=True, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    answers = {m["id"]: m for m in map(json.loads, done.stdout.splitlines()) if "id" in m}
    for n in (1, 2, 3):
        assert result(answers[n]).get("isError") is not True, answers[n]


def cancel(n: int | str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": n, "reason": "user"}}


def close_stdin(server: Server) -> None:
    assert server.process.stdin is not None
    server.process.stdin.close()


# Every way a stdio server is told to stop (issue 31, row 4: after a cancel, each of them waited out the grace).
ENDS: dict[str, Callable[[Server], None]] = {
    "stdin closed": close_stdin,
    "SIGTERM": lambda server: server.process.send_signal(signal.SIGTERM),
    "SIGINT": lambda server: server.process.send_signal(signal.SIGINT),
}
# An hour's grace: a server that waits for a call that is not running never exits within the test's timeout.
FOREVER = {"FLASHSNAP_SHUTDOWN_GRACE_S": "3600"}


@pytest.mark.parametrize("end", list(ENDS))
@pytest.mark.parametrize("request_id", [1, "gen-1"])
def test_a_cancelled_call_does_not_hold_the_exit(
    emulator: Emulator, state: EmulatorState, end: str, request_id: int | str
) -> None:
    state.inject("chat", Fault(stall_after_chunks=1, ping_every_s=0.2))  # a generation that never ends
    server = Server(env={**emulator.environment(), **FOREVER})
    server.send(*HELLO, call(request_id, "generate", GENERATE))
    assert state.wait_until(lambda: state.pings_sent >= 1, 30)
    server.send(cancel(request_id))
    assert state.wait_until(lambda: state.active_streams == 0, 30)  # the cancel was read: the stream is let go
    ENDS[end](server)
    assert server.exit_code() == 0, server.stderr.decode()
    assert request_id not in server.answers  # a cancelled request is not answered
    assert state.count("chat") == 1


@pytest.mark.parametrize("end", list(ENDS))
def test_with_nothing_in_flight_the_server_exits_at_once(emulator: Emulator, end: str) -> None:
    server = Server(env={**emulator.environment(), **FOREVER})
    server.send(*HELLO, call(1, "list_workspaces", {}))
    assert result(server.wait_answer(1)).get("isError") is not True
    ENDS[end](server)
    assert server.exit_code() == 0, server.stderr.decode()


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.mark.parametrize("end", list(ENDS))
def test_an_open_listen_stream_does_not_hold_the_exit(emulator: Emulator, end: str) -> None:
    """A 2026-07-28 client's `subscriptions/listen` stays open for as long as the session: it is no call in flight
    for the shutdown to wait for (it held the exit for the whole grace)."""
    server = Server("--toolsets", "all", env={**emulator.environment(), **FOREVER})
    listen = {"notifications": {"resourcesListChanged": True}, "_meta": MODERN_META}
    server.send({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": listen})
    server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": MODERN_META}})
    assert "tools" in result(server.wait_answer(2))  # the listen request was read before this one
    ENDS[end](server)
    assert server.exit_code() == 0, server.stderr.decode()
