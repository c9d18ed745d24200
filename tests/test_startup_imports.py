"""A plain stdio start imports nothing it does not use: redis-py without FLASHSNAP_REDIS_URL, the Prometheus client
without a metrics port, the OpenTelemetry SDK and exporter without an OTLP endpoint.

The server runs as `flashsnap-mcp` does, in a fresh interpreter, answers a real tool call, and lists at exit which
of these modules were loaded. (The OpenTelemetry API itself is imported by the MCP SDK, so it is not ours to defer.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server.sandbox import Emulator
from tests.test_shutdown import HELLO, call
from tests.test_stdio import params

HEAVY = ("redis", "prometheus_client", "opentelemetry.sdk", "opentelemetry.exporter")
START = (
    "import atexit, sys\n"
    f"HEAVY = {HEAVY!r}\n"
    "atexit.register(lambda: sys.stderr.write('LOADED ' + ','.join(m for m in HEAVY if m in sys.modules) + '\\n'))\n"
    "from server.cli.main import main\n"
    "main(sys.argv[1:])\n"
)


def loaded(env: dict[str, str]) -> set[str]:
    lines = b"".join(json.dumps(m).encode() + b"\n" for m in (*HELLO, call(1, "list_models", {})))
    done = subprocess.run(
        [sys.executable, "-c", START],
        input=lines,
        env=params(env=env).env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b'"id":1' in done.stdout  # the call was answered
    line = next(ln for ln in done.stderr.decode().splitlines() if ln.startswith("LOADED "))
    return {m for m in line.removeprefix("LOADED ").split(",") if m}


def test_a_plain_stdio_start_leaves_redis_prometheus_and_the_otel_sdk_unimported(emulator: Emulator) -> None:
    assert loaded(emulator.environment()) == set()


@pytest.mark.parametrize(
    ("setting", "module"),
    [({"FLASHSNAP_METRICS_PORT": "0"}, "prometheus_client")],
)
def test_what_a_run_uses_is_imported_when_it_is_used(emulator: Emulator, setting: dict[str, str], module: str) -> None:
    assert module in loaded({**emulator.environment(), **setting})
