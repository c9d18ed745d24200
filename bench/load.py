"""Load: N concurrent sessions for T seconds against a sandboxed flashsnap-mcp over Streamable HTTP."""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from mcp import Client

from bench.report import machine
from tests.servers import free_port

SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
CALLS: tuple[tuple[str, dict[str, str]], ...] = (
    ("list_workspaces", {}),
    ("list_models", {"provider": "openai"}),
    ("check_quota", {}),
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drain(process: Process, ready: anyio.Event) -> None:
    """Read the server's log (so its pipe never fills) and say when it is serving."""
    assert process.stderr is not None
    seen = ""
    async for chunk in TextReceiveStream(process.stderr):
        if not ready.is_set():
            seen += chunk
            if "serving streamable-http" in seen:
                ready.set()


async def run() -> str:
    port = free_port()
    command = [str(Path(sys.executable).parent / "flashsnap-mcp"), "--sandbox", "--transport", "streamable-http",
               "--port", str(port)]  # fmt: skip
    latencies: list[float] = []
    errors = 0
    async with await anyio.open_process(command) as process, anyio.create_task_group() as logs:
        ready = anyio.Event()
        logs.start_soon(drain, process, ready)
        with anyio.fail_after(30):
            await ready.wait()
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url) as warm:  # the first calls fetch the token and fill caches
            for name, args in CALLS:
                await warm.call_tool(name, args)
        rss_start = rss_mib(process.pid)
        deadline = time.perf_counter() + SECONDS

        async def session() -> None:
            nonlocal errors
            async with Client(url) as client:
                i = 0
                while time.perf_counter() < deadline:
                    name, args = CALLS[i % len(CALLS)]
                    started = time.perf_counter()
                    result = await client.call_tool(name, args)
                    latencies.append(time.perf_counter() - started)
                    errors += bool(result.is_error)
                    i += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(SESSIONS):
                tg.start_soon(session)
        elapsed = time.perf_counter() - started
        rss_end = rss_mib(process.pid)
        process.send_signal(signal.SIGTERM)
        await process.wait()
    quantiles = statistics.quantiles(latencies, n=100)
    return "\n".join(
        [
            "## Load over Streamable HTTP",
            "",
            f"{SESSIONS} concurrent sessions, each calling `list_workspaces`, `list_models` and `check_quota` in turn "
            f"for {SECONDS:.0f} s, against `flashsnap-mcp --sandbox --transport streamable-http` in its own process "
            "(the emulator runs inside it, so its work counts against the server's numbers). The load generator "
            "is the SDK's client in the benchmark process, on the same 2 cores.",
            "",
            "| calls | calls/s | p50 latency | p99 latency | errors | RSS after warm-up | RSS at the end |",
            "|---|---|---|---|---|---|---|",
            f"| {len(latencies)} | {len(latencies) / elapsed:.0f} | {quantiles[49] * 1000:.1f} ms | "
            f"{quantiles[98] * 1000:.1f} ms | {errors} | {rss_start:.1f} MiB | {rss_end:.1f} MiB |",
            "",
            "Goals: 0 errors, flat memory.",
            "",
            f"Reproduce: `make bench BENCH=load`. Machine: {machine()}.",
        ]
    )
