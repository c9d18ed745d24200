"""The audit log through a real client: one keyed record per call, read and prompt; no argument or secret in it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from server.cli.audit import main as audit_command
from server.clock import FakeClock
from server.config import Settings
from server.features.resources import SNAPSHOT
from server.observe import otel_logs
from server.observe.audit import AuditLog, rfc3339, writer_name
from server.observe.audit_chain import KEYS, Keys
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.sandbox.records import Fault
from server.transports.http import build_http_app
from tests.conftest import MODES, NO_QUESTIONS, Connect
from tests.results import data, error
from tests.test_consent import DEFAULT, User, saved
from tests.test_shutdown import HELLO, Server, call, result
from tests.test_stdio import COMMAND, params
from tests.transports import http_client

KEY = "audit-key-CANARY-7d1f0c9e4b2a8d6f3e5c1b0a9f8e7d6c"
CANARY = "CANARY-ARGUMENT-3f9a1c77"  # in arguments: never in the file
UNKNOWN_SNAPSHOT = "00000000-0000-4000-8000-000000000000"
# One logger provider per process: set once, its exporter cleared per test.
EXPORTED = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def verify(*paths: Path, key: str = KEY, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`flashsnap-mcp audit verify PATH…`: the command's own entry point with only the key in its environment, run
    in this process (a subprocess costs ~1.5 s of imports each; the key-file test below runs the real command)."""
    argv = ["verify", *extra, *map(str, paths)]
    out, err = io.StringIO(), io.StringIO()
    only_the_key = mock.patch.dict(os.environ, {"PATH": "/usr/bin:/bin", "FLASHSNAP_AUDIT_KEY": key}, clear=True)
    with (
        only_the_key,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.raises(SystemExit) as exited,
    ):
        audit_command(argv)
    code = exited.value.code if isinstance(exited.value.code, int) else 1
    return subprocess.CompletedProcess(["flashsnap-mcp", "audit", *argv], code, out.getvalue(), err.getvalue())


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


def audited(log_path: Path, **more: str) -> dict[str, str]:
    return {"FLASHSNAP_AUDIT_LOG": str(log_path), "FLASHSNAP_AUDIT_KEY": KEY, **more}


def secrets_in(path: Path, secrets: list[str]) -> list[str]:
    text = path.read_text()
    return [secret for secret in secrets if secret in text]


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def wait_for_lines(path: Path, count: int) -> None:
    """Until `path` holds `count` lines: a cancelled call's record is written as its handler unwinds."""
    with anyio.fail_after(10):
        while line_count(path) < count:  # noqa: ASYNC110 - the file offers no event to wait on
            await anyio.sleep(0.01)


async def cancel_a_generate(client: Client, state: EmulatorState) -> None:
    state.latency_s["chat_chunk"] = 0.05
    first_progress = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": CANARY},
                                       progress_callback=on_progress)  # fmt: skip

            tg.start_soon(call)
            await first_progress.wait()
            tg.cancel_scope.cancel()
    state.latency_s.clear()


async def mixed_run(
    client: Client, state: EmulatorState, clock: FakeClock
) -> list[tuple[str, str | None, str, dict[str, Any]]]:
    """Every kind of request a user makes; (method, tool, outcome the client saw, arguments) for each."""
    seen: list[tuple[str, str | None, str, dict[str, Any]]] = []

    async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, arguments)
        outcome = error(result)["code"] if result.is_error else "ok"
        seen.append(("tools/call", name, outcome, arguments))
        return {} if result.is_error else data(result) | {"_result": result}

    await call("list_models", {})
    state.inject("snapshot_search", Fault(status=429, retry_after_s=3))
    await call("search_snapshots", {"query": CANARY})  # waits 3 s for the 429, then answers
    made = await call("snapshot", {"name": "audit", "core": f"The thought {CANARY}"})
    generated = await call("generate", {"model": "gpt-4.1-mini", "prompt": f"Say {CANARY}"})
    await call("get_snapshot", {"id": UNKNOWN_SNAPSHOT})  # a tool error: not_found
    await call("get_snapshot", {"id": CANARY})  # refused before the tool runs: invalid_arguments
    state.inject("snapshot_search", Fault(status=429, retry_after_s=600))
    await call("search_snapshots", {"query": CANARY})  # a wait beyond the budget: rate_limited
    clock.advance(600)  # the 429's wait over (a resource read waits for nothing)
    uri = f"neuralsnap://snapshots/{made['id']}"
    await client.read_resource(uri)
    seen.append(("resources/read", SNAPSHOT, "ok", {"uri": uri}))
    with pytest.raises(MCPError):
        await client.read_resource(f"neuralsnap://snapshots/{UNKNOWN_SNAPSHOT}")
    seen.append(("resources/read", SNAPSHOT, "not_found", {"uri": f"neuralsnap://snapshots/{UNKNOWN_SNAPSHOT}"}))
    prompt_args = {"job": f"40 texts {CANARY}", "words": "6000"}
    await client.get_prompt("check_quota_before_job", prompt_args)
    seen.append(("prompts/get", "check_quota_before_job", "ok", prompt_args))
    await cancel_a_generate(client, state)
    seen.append(("tools/call", "generate", "cancelled", {"model": "gpt-4.1-mini", "prompt": CANARY}))
    seen.append(("words", None, str(generated["words_used"]), {}))
    return seen


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_mixed_run_writes_one_keyed_record_per_request_and_no_argument_or_secret(
    mode: str, connect: Connect, state: EmulatorState, emulator: Emulator, clock: FakeClock, log_path: Path
) -> None:
    async with connect(mode=mode, env=audited(log_path)) as client:
        expected = await mixed_run(client, state, clock)
        words = int(expected.pop()[2])
        await wait_for_lines(log_path, len(expected))
    check_mixed_run(log_path, expected, words, clock, audited(log_path) | emulator.environment())


def check_mixed_run(
    log_path: Path,
    expected: list[tuple[str, str | None, str, dict[str, Any]]],
    words: int,
    clock: FakeClock,
    environ: dict[str, str],
) -> None:
    written = records(log_path)
    assert len(written) == len(expected)  # exactly one each, the cancelled call included
    assert all(list(r) == list(KEYS) for r in written)  # every key, in its order
    # Recorded as each request ended: in the order they were made (the cancel last).
    assert [(r["method"], r["tool"], r["outcome"]) for r in written] == [(m, t, o) for m, t, o, _ in expected]
    keys = Keys(KEY)
    assert [r["args_hmac"] for r in written] == [keys.args_hmac(a) for *_, a in expected]
    assert all(r["principal"] == "local" for r in written)  # stdio: whoever started the process
    assert all(datetime.fromisoformat(r["time"]).utcoffset() == timedelta(0) for r in written)  # RFC 3339, UTC
    assert written[-1]["time"] == rfc3339(clock.now())  # the injected clock, not the wall's
    by_tool = {(r["tool"], r["outcome"]): r for r in written}
    assert by_tool[("generate", "ok")]["words"] == words > 0
    assert all(r["words"] is None for r in written if r["tool"] != "generate")
    waited = [r for r in written if r["tool"] == "search_snapshots"]
    assert waited[0]["wait_s"] == 3
    assert waited[0]["outcome"] == "ok"
    assert all(r["wait_s"] == 0 for r in written if r is not waited[0])
    # The calls that reached an upstream name its account; neuroflash's name their requests (NeuralSnap has no
    # request ids). The prompt reached no upstream; a call refused for its arguments reached none either.
    upstream = [r for r in written if r["method"] != "prompts/get" and r["outcome"] != "invalid_arguments"]
    assert all(r["account"] and r["account"].startswith("live:") for r in upstream)
    assert all(len(r["request_ids"]) >= 2 for r in upstream if r["tool"] in ("list_models", "generate"))
    assert all(r["request_ids"] == [] and r["account"] is None for r in written if r not in upstream)
    assert by_tool[("check_quota_before_job", "ok")]["account"] is None
    text = log_path.read_text()
    settings = Settings.from_env({**NO_QUESTIONS, **environ})
    for secret in [CANARY, *settings.secrets]:
        assert text.count(secret) == 0, secret
    assert oct(log_path.stat().st_mode & 0o777) == oct(0o600)
    assert verify(log_path).returncode == 0


def build_log(path: Path, count: int, key: str = KEY, **options: Any) -> AuditLog:
    writer = AuditLog(path, key, FakeClock(), **options)
    for n in range(count):
        writer.record(method="tools/call", tool="list_models", outcome="ok", principal="local", arguments={"n": n})
    return writer


def edit(lines: list[str]) -> list[str]:
    lines[2] = lines[2].replace('"outcome":"ok"', '"outcome":"not_found"')
    return lines


def edit_keeping_the_hash_shape(lines: list[str]) -> list[str]:
    record = json.loads(lines[2])
    record["principal"] = "mallory"
    lines[2] = json.dumps(record, separators=(",", ":"))
    return lines


def respace(lines: list[str]) -> list[str]:
    lines[2] = lines[2].replace(",", ", ")
    return lines


def swap(first: int) -> Any:
    def swapped(lines: list[str]) -> list[str]:
        lines[first], lines[first + 1] = lines[first + 1], lines[first]
        return lines

    return swapped


def drop(index: int) -> Any:
    return lambda lines: lines[:index] + lines[index + 1 :]


def cut_short(lines: list[str]) -> list[str]:
    return [*lines[:-1], lines[-1][:40]]


def rewritten_without_the_key(lines: list[str]) -> list[str]:
    """Someone who can write the file but not read the key changes a record and recomputes every hash."""
    forged, prev, keys = [], None, Keys("a-guess-at-the-key-that-is-32-chars-long")
    for raw in lines:
        record = json.loads(raw)
        record["outcome"] = "ok"
        record["principal"] = "mallory"
        record["prev"] = prev
        unsealed = json.dumps({k: record[k] for k in KEYS[:-1]}, separators=(",", ":"))
        record["hash"] = prev = keys.seal(prev, unsealed)
        forged.append(json.dumps(record, separators=(",", ":")))
    return forged


# (tampering, the 1-based line verify must name): the changed line, or the line after the one dropped.
TAMPERINGS = {
    "a value edited": (edit, 3),
    "a value edited, JSON rewritten": (edit_keeping_the_hash_shape, 3),
    "a line re-spaced": (respace, 3),
    "the first line dropped": (drop(0), 1),
    "a middle line dropped": (drop(2), 3),
    "lines 1 and 2 swapped": (swap(0), 1),
    "lines 3 and 4 swapped": (swap(2), 3),
    "the last line cut short": (cut_short, 5),
    "rewritten without the key": (rewritten_without_the_key, 1),
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=list(TAMPERINGS))
def test_verify_names_the_first_line_that_was_tampered_with(tamper: Any, log_path: Path) -> None:
    build_log(log_path, 5).close()
    assert verify(log_path).returncode == 0
    tampered = log_path.with_name("copy.jsonl")
    change, line = tamper
    tampered.write_text("\n".join(change(log_path.read_text().splitlines())) + "\n")
    done = verify(tampered)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{tampered}:{line}:" in done.stdout


def test_verify_with_another_key_fails_on_the_first_line(log_path: Path) -> None:
    build_log(log_path, 3).close()
    done = verify(log_path, key="another-key-of-at-least-32-characters!!")
    assert done.returncode == 1
    assert f"{log_path}:1:" in done.stdout


def test_a_restarted_writer_continues_the_chain(log_path: Path) -> None:
    build_log(log_path, 2).close()
    build_log(log_path, 2).close()
    assert len(records(log_path)) == 4
    assert verify(log_path).returncode == 0


def rotated(path: Path) -> list[Path]:
    return [*sorted(path.parent.glob("audit.*.jsonl")), path]


def test_rotation_by_size_keeps_the_chain_across_files(log_path: Path) -> None:
    build_log(log_path, 40, max_bytes=4096).close()
    files = rotated(log_path)
    assert len(files) >= 3
    assert all(f.stat().st_size <= 4096 for f in files)
    assert sum(len(records(f)) for f in files) == 40
    assert records(files[1])[0]["prev"] == records(files[0])[-1]["hash"]  # the new file chains to the old
    assert verify(*files).returncode == 0
    # A file left out, or the set out of order, breaks at the first line of the file that no longer follows.
    done = verify(files[0], *files[2:])
    assert done.returncode == 1
    assert f"{files[2]}:1:" in done.stdout
    assert verify(files[1], files[0], *files[2:]).returncode == 1
    # From a later file on, when the older ones are gone: --partial trusts its first line's `prev`.
    assert verify(*files[1:]).returncode == 1
    assert verify(*files[1:], extra=("--partial",)).returncode == 0


def test_rotation_by_day_starts_a_file_at_the_first_record_of_each_day(log_path: Path) -> None:
    clock = FakeClock(start=datetime.fromisoformat("2026-12-06T23:59:00+00:00").timestamp())
    writer = AuditLog(log_path, KEY, clock, daily=True)
    for _ in range(4):
        writer.record(method="tools/call", tool="list_models", outcome="ok", principal="local")
        clock.advance(30)
    writer.close()
    files = rotated(log_path)
    assert [len(records(f)) for f in files] == [2, 2]
    assert files[0].name.startswith("audit.20261207T")  # rotated at the first record of the 7th
    assert verify(*files).returncode == 0


def test_a_refusal_is_one_denied_record_in_the_chain(log_path: Path) -> None:
    """As the transports' auth layer calls it: a presented token refused, then a scope missing."""
    writer = build_log(log_path, 1)
    writer.refused(None, "tools/call", "delete_snapshot", "invalid_token")
    writer.refused("alice", "tools/call", "delete_snapshot", "missing scope neuralsnap:write")
    writer.close()
    denied = records(log_path)[1:]
    assert [(r["principal"], r["outcome"], r["tool"]) for r in denied] == [
        (None, "denied", "delete_snapshot"),
        ("alice", "denied", "delete_snapshot"),
    ]
    assert all(list(r) == list(KEYS) for r in denied)
    assert verify(log_path).returncode == 0


def test_without_a_key_one_is_made_private_in_the_state_directory_and_verify_finds_it(
    log_path: Path, state_dir: Path
) -> None:
    from server.runtime import open_audit

    settings = Settings.from_env({"FLASHSNAP_AUDIT_LOG": str(log_path), "FLASHSNAP_STATE_DIR": str(state_dir)})
    writer = open_audit(settings, FakeClock())
    assert writer is not None
    writer.record(method="tools/call", tool="list_models", outcome="ok", principal="local")
    writer.close()
    key_file = state_dir / "audit.key"
    assert oct(key_file.stat().st_mode & 0o777) == oct(0o600)
    key = key_file.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key not in log_path.read_text()
    env = {"PATH": "/usr/bin:/bin", "FLASHSNAP_STATE_DIR": str(state_dir)}
    done = subprocess.run([COMMAND, "audit", "verify", str(log_path)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    missing = subprocess.run([COMMAND, "audit", "verify", str(log_path)], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "FLASHSNAP_STATE_DIR": str(log_path.parent)},
                             timeout=60, check=False)  # fmt: skip
    assert missing.returncode == 2
    assert "no audit key" in missing.stderr


async def call_many(client: Client, times: int) -> None:
    for n in range(times):
        data(await client.call_tool("list_models", {}))
        await client.get_prompt("check_quota_before_job", {"job": f"job {n} {CANARY}"})


async def test_two_processes_on_one_audit_path_each_keep_a_chain_that_verifies(
    emulator: Emulator, log_path: Path
) -> None:
    """Two stdio servers started on one FLASHSNAP_AUDIT_LOG, called at once: one writes the path, the other its
    own file, each whole and each verifying."""
    env = {**NO_QUESTIONS, **emulator.environment(), **audited(log_path)}
    with anyio.fail_after(120):
        async with Client(params(env=env)) as first, Client(params(env=env)) as second, anyio.create_task_group() as tg:
            tg.start_soon(call_many, first, 10)
            tg.start_soon(call_many, second, 10)
    files = sorted(log_path.parent.glob("audit*.jsonl"))
    assert len(files) == 2
    assert files[-1] == log_path  # "audit-<host>-<pid>.jsonl" sorts before "audit.jsonl"
    assert re.fullmatch(r"audit-\w+-\d+\.jsonl", files[0].name)
    assert [len(records(f)) for f in files] == [20, 20]
    for file in files:
        done = verify(file)
        assert done.returncode == 0, done.stdout + done.stderr
    assert CANARY not in "".join(f.read_text() for f in files)


def test_records_go_out_as_opentelemetry_log_records_when_a_provider_is_set(log_path: Path) -> None:
    if not otel_logs.active():
        provider = LoggerProvider()
        provider.add_log_record_processor(SimpleLogRecordProcessor(EXPORTED))
        set_logger_provider(provider)
    EXPORTED.clear()
    build_log(log_path, 2).close()
    lines = log_path.read_text().splitlines()
    sent = [r for r in EXPORTED.get_finished_logs() if r.log_record.event_name == "flashsnap.audit"]
    assert [r.log_record.body for r in sent] == lines
    attributes = dict(sent[0].log_record.attributes or {})
    assert attributes["flashsnap.audit.tool"] == "list_models"
    assert attributes["flashsnap.audit.outcome"] == "ok"


@pytest.mark.parametrize("mode", MODES)  # the question pushed inside the call (legacy), or in rounds (auto)
@pytest.mark.parametrize(("action", "outcome"), [("accept", "ok"), ("decline", "declined")])
async def test_a_question_to_the_user_is_recorded_round_by_round(
    connect: Connect, state: EmulatorState, log_path: Path, mode: str, action: str, outcome: str
) -> None:
    env = {**DEFAULT, **audited(log_path)}
    async with connect(mode=mode, env=env, toolsets=("all",), elicitation=User(action)) as client:
        snapshot_id = await saved(client)
        result = await client.call_tool("delete_snapshot", {"id": snapshot_id})
    assert (error(result)["code"] if result.is_error else "ok") == outcome
    deletes = [r["outcome"] for r in records(log_path) if r["tool"] == "delete_snapshot"]
    # Each round of the 2026-07-28 exchange is a tools/call of its own: the question, then the answer's call.
    assert deletes == (["input_required", outcome] if mode == "auto" else [outcome])
    assert state.count("snapshot_delete") == (1 if outcome == "ok" else 0)


async def test_over_http_behind_the_shared_token_the_principal_is_null(
    emulator: Emulator, clock: FakeClock, log_path: Path
) -> None:
    """The shared FLASHSNAP_HTTP_TOKEN names nobody; an unknown tool's call is recorded like any other."""
    token = "shared-http-token-CANARY-0123456789"
    environ = {**NO_QUESTIONS, **emulator.environment(), **audited(log_path), "FLASHSNAP_HTTP_TOKEN": token}
    app = build_http_app(Settings.from_env(environ, transport="streamable-http"), clock=clock)
    http = httpx2.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"})
    with LoopbackServer(app, lifespan="on") as server:
        async with http_client(server.url, "auto", http=http) as client:
            data(await client.call_tool("list_models", {}))
            unknown = await client.call_tool("no_such_tool", {"x": CANARY})
    written = records(log_path)
    assert [(r["principal"], r["tool"]) for r in written] == [(None, "list_models"), (None, "no_such_tool")]
    assert unknown.is_error
    assert written[1]["outcome"] == "error"  # the SDK's answer carries no code of this server's
    assert secrets_in(log_path, [token, CANARY]) == []


def test_a_worker_among_several_writes_a_file_of_its_own_even_with_the_path_free(log_path: Path) -> None:
    """FLASHSNAP_WORKERS above 1: no worker races the others for the path itself."""
    writer = build_log(log_path, 2, several=True)
    writer.close()
    assert not log_path.exists()
    assert re.fullmatch(r"audit-\w+-\d+\.jsonl", writer.path.name)
    assert verify(writer.path).returncode == 0


@pytest.mark.parametrize("several", [False, True], ids=["replicas", "workers"])
def test_writers_that_share_a_host_name_and_process_id_each_keep_a_file_of_their_own(
    log_path: Path, several: bool
) -> None:
    """Containers given one host name (compose's `hostname:`), each server process 1: the name `stem-<host>-<pid>`
    is claimed by its lock like the path itself, so a third writer takes `-2` instead of sharing a chain."""
    writers = [build_log(log_path, 3, several=several) for _ in range(4)]
    for writer in writers:
        writer.record(method="tools/call", tool="list_models", outcome="ok", principal="local", arguments={})
        writer.close()
    own = f"audit-{writer_name()}"
    expected = ([] if several else ["audit.jsonl"]) + [f"{own}.jsonl", f"{own}-2.jsonl", f"{own}-3.jsonl"]
    expected += [] if not several else [f"{own}-4.jsonl"]
    assert [writer.path.name for writer in writers] == expected
    for writer in writers:
        assert len(records(writer.path)) == 4
        assert verify(writer.path).returncode == 0


def test_a_half_line_left_by_a_crash_is_named_and_the_records_after_it_stay_whole(log_path: Path) -> None:
    build_log(log_path, 3).close()
    whole = log_path.read_text()
    log_path.write_text(whole + whole.splitlines()[0][:50])  # killed in the middle of a fourth record
    build_log(log_path, 2).close()  # restarted: goes on after the last whole record
    lines = log_path.read_text().splitlines()
    assert len(lines) == 6
    assert [json.loads(line)["prev"] for line in lines[4:5]] == [json.loads(lines[2])["hash"]]
    done = verify(log_path)
    assert done.returncode == 1
    assert f"{log_path}:4:" in done.stdout


def test_a_call_the_shutdown_cuts_off_is_recorded_before_the_file_closes(
    emulator: Emulator, state: EmulatorState, log_path: Path
) -> None:
    state.inject("chat", Fault(stall_after_chunks=1, ping_every_s=0.2))  # a generation that never ends
    env = {**emulator.environment(), **audited(log_path), "FLASHSNAP_SHUTDOWN_GRACE_S": "0.5"}
    server = Server(env=env)
    server.send(*HELLO, call(1, "generate", {"model": "gpt-4.1-mini", "prompt": CANARY}))
    assert state.wait_until(lambda: state.pings_sent >= 1, 30)
    server.process.send_signal(signal.SIGTERM)
    err = result(server.wait_answer(1))["_meta"]["io.flashsnap/error"]
    assert server.exit_code() == 0, server.stderr.decode()
    (written,) = records(log_path)
    assert (written["tool"], written["outcome"]) == ("generate", err["code"]) == ("generate", "shutdown")
    assert err["request_id"] in written["request_ids"]
    assert verify(log_path).returncode == 0
