"""A message whose bytes are not UTF-8 is answered -32700 with its id, over stdio as over HTTP, and nothing is saved.

Issue 31, row 6: over stdio the bad bytes were replaced, and a snapshot was saved as `Caf\\ufffd`. Every class of
byte sequence RFC 3629 (and Unicode's "Best Practices for Using U+FFFD") rules out, each in a snapshot's name,
through a real `flashsnap-mcp` subprocess and a real uvicorn server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.test_shutdown import HELLO, Server, result

INVALID: dict[str, bytes] = {
    "lone continuation byte 80": b"\x80",
    "lone continuation byte BF": b"\xbf",
    "continuation bytes after a whole character": b"\xc3\xa9\x80",
    "overlong 2-byte C0 AF ('/')": b"\xc0\xaf",
    "overlong 2-byte C1 BF": b"\xc1\xbf",
    "overlong 3-byte E0 80 AF": b"\xe0\x80\xaf",
    "overlong 4-byte F0 80 80 AF": b"\xf0\x80\x80\xaf",
    "overlong NUL C0 80 (modified UTF-8)": b"\xc0\x80",
    "encoded high surrogate ED A0 80": b"\xed\xa0\x80",
    "encoded low surrogate ED BF BF": b"\xed\xbf\xbf",
    "encoded surrogate pair (CESU-8)": b"\xed\xa0\xbd\xed\xb8\x80",
    "truncated 2-byte C3, then ASCII": b"\xc3",
    "truncated 3-byte E2 82, then ASCII": b"\xe2\x82",
    "truncated 4-byte F0 9F 98, then ASCII": b"\xf0\x9f\x98",
    "past U+10FFFF F4 90 80 80": b"\xf4\x90\x80\x80",
    "F5": b"\xf5\x80\x80\x80",
    "F8 (a 5-byte form)": b"\xf8\x88\x80\x80\x80",
    "FC (a 6-byte form)": b"\xfc\x84\x80\x80\x80\x80",
    "FE": b"\xfe",
    "FF": b"\xff",
}
TRANSPORTS = ["stdio", "streamable-http"]


def snapshot_call(n: int, bad: bytes) -> bytes:
    """A `snapshot` call named "Caf" + `bad`: valid JSON around bytes that are not UTF-8."""
    template = json.dumps(
        {"jsonrpc": "2.0", "id": n, "method": "tools/call",
         "params": {"name": "snapshot", "arguments": {"name": "Caf@@", "core": "A place for coffee."}}}
    )  # fmt: skip
    return template.encode().replace(b"@@", bad)


@pytest.fixture(scope="module")
def stdio_world() -> Iterator[tuple[EmulatorState, Server]]:
    """One stdio server for the whole table (its state in memory), and the emulator it talks to."""
    state = EmulatorState(FakeClock())
    with Emulator(state) as emulator:
        server = Server(env={**emulator.environment(), "FLASHSNAP_STATE": "memory", "FLASHSNAP_CONFIRM_WORDS": "0"})
        server.send(*HELLO)
        assert "result" in server.wait_answer(0)
        yield state, server
        assert server.process.stdin is not None
        server.process.stdin.close()
        assert server.exit_code() == 0


def over_stdio(server: Server, n: Any, raw: bytes) -> dict[str, Any]:
    assert server.process.stdin is not None
    server.process.stdin.write(raw + b"\n")
    server.process.stdin.flush()
    return server.wait_answer(n)


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_utf8_over_stdio_is_a_parse_error_with_the_id_and_saves_nothing(
    stdio_world: tuple[EmulatorState, Server], case: str
) -> None:
    state, server = stdio_world
    n = 100 + list(INVALID).index(case)
    answer = over_stdio(server, n, snapshot_call(n, INVALID[case]))
    assert answer["error"]["code"] == -32700, answer
    assert "UTF-8" in answer["error"]["message"]
    assert state.count("snapshot_create") == 0
    assert not state.snapshots


def test_after_every_invalid_line_stdio_still_saves_valid_utf8_exactly(
    stdio_world: tuple[EmulatorState, Server],
) -> None:
    state, server = stdio_world
    for n, bad in enumerate(INVALID.values(), start=300):
        over_stdio(server, n, snapshot_call(n, bad))
    saved = result(over_stdio(server, 1, snapshot_call(1, "é".encode())))
    assert saved["structuredContent"]["name"] == "Café"
    assert [s["name"] for s in state.snapshots.values()] == ["Café"]


def test_a_line_cut_inside_a_character_after_its_json_is_a_parse_error_too(
    stdio_world: tuple[EmulatorState, Server],
) -> None:
    state, server = stdio_world
    before = state.count("snapshot_create")
    answer = over_stdio(server, 2, snapshot_call(2, b"") + b"\xe2\x82")
    assert answer["error"]["code"] == -32700
    assert state.count("snapshot_create") == before


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_utf8_over_http_is_a_parse_error_with_the_id_and_saves_nothing(
    emulator: Emulator, state: EmulatorState, clock: FakeClock, case: str
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", http_stateless=True)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
        response = httpx2.post(f"{server.url}/mcp", content=snapshot_call(7, INVALID[case]), headers=headers)
    assert response.status_code == 400
    answer = response.json()
    assert answer["id"] == 7
    assert answer["error"]["code"] == -32700
    assert state.count("snapshot_create") == 0


def test_when_the_bad_bytes_are_in_the_id_the_answer_names_no_id(stdio_world: tuple[EmulatorState, Server]) -> None:
    _, server = stdio_world
    assert server.process.stdout is not None
    raw = b'{"jsonrpc": "2.0", "id": "a\xffb", "method": "tools/list"}'
    answer = over_stdio(server, None, raw)  # the answer comes with id null: the id could not be read
    assert answer["error"]["code"] == -32700
