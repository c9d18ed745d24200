"""What flashsnap-mcp adds on top of the upstream call: tool-call overhead, start-up, streaming relay, memory.

Each figure is measured side by side with its baseline in the same run, over stdio subprocesses
against the emulator on loopback.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters

from bench.report import machine
from server.sandbox import Emulator, EmulatorState, catalog

CALLS = int(os.environ.get("BENCH_CALLS", "300"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
STARTS = int(os.environ.get("BENCH_STARTS", "10"))
STREAMS = 100
BIN = Path(sys.executable).parent


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def ours(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=str(BIN / "flashsnap-mcp"), args=["--log-level", "WARNING"], env=env)


def bare(env: dict[str, str]) -> StdioServerParameters:
    script = str(Path(__file__).with_name("bare_server.py"))
    return StdioServerParameters(command=sys.executable, args=[script], env=env)


async def timed(n: int, call: Callable[[], Awaitable[Any]], *, warm: int = 10) -> list[float]:
    """`n` calls' durations in seconds, after `warm` calls not counted (tokens, connections, caches)."""
    for _ in range(warm):
        await call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


async def overhead(env: dict[str, str]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    url = env["NEUROFLASH_API_URL"] + "/api/ds-prototypes/model_selection/models"
    async with httpx2.AsyncClient() as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": env["NEUROFLASH_CLIENT_ID"],
            "client_secret": env["NEUROFLASH_CLIENT_SECRET"],
        }
        token = (await http.post(env["NEUROFLASH_TOKEN_URL"], data=form)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "x-workspace-id": env["NEUROFLASH_WORKSPACE_ID"]}
        results["direct httpx2 request"] = await timed(CALLS, lambda: http.get(url, headers=headers))
    # Both servers are up at once and called in turn, so drift on a shared machine hits both alike.
    async with Client(bare(env), mode="legacy") as floor, Client(ours(env), mode="legacy") as mine:
        for client in (floor, mine):
            for _ in range(10):  # warm-up: tokens, connections, caches
                await client.call_tool("list_models", {})
        results["bare MCPServer tool"], results["flashsnap-mcp list_models"] = [], []
        for _ in range(CALLS):
            for name, client in (("bare MCPServer tool", floor), ("flashsnap-mcp list_models", mine)):
                started = time.perf_counter()
                await client.call_tool("list_models", {})
                results[name].append(time.perf_counter() - started)
    return results


class FastUpstream:
    """`bench/fast_upstream.py` in a process of its own: the token and model list, answered in microseconds."""

    def __enter__(self) -> dict[str, str]:
        script = str(Path(__file__).with_name("fast_upstream.py"))
        self._process = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True)  # noqa: S603
        assert self._process.stdout is not None
        base = f"http://127.0.0.1:{int(self._process.stdout.readline())}"
        return {"NEUROFLASH_API_URL": base, "NEUROFLASH_TOKEN_URL": base + "/oauth/v2/token",
                "NEUROFLASH_CLIENT_ID": "bench", "NEUROFLASH_CLIENT_SECRET": "bench-secret",
                "NEUROFLASH_WORKSPACE_ID": catalog.MARKETING_WORKSPACE}  # fmt: skip

    def __exit__(self, *_: object) -> None:
        self._process.kill()
        self._process.wait()


async def fast_overhead(env: dict[str, str]) -> list[tuple[float, float]]:
    """Per run, the p50 of `list_models` (workspace_id given) for the bare tool and for flashsnap-mcp, over stdio
    in the client's default protocol mode, called alternately, against the fast upstream."""
    arguments = {"workspace_id": catalog.MARKETING_WORKSPACE}
    runs: list[tuple[float, float]] = []
    async with Client(bare(env)) as floor, Client(ours(env)) as mine:
        for client in (floor, mine):
            for _ in range(20):  # warm-up: tokens, connections, caches
                await client.call_tool("list_models", arguments)
        for _ in range(RUNS):
            times: dict[str, list[float]] = {"bare": [], "ours": []}
            for _ in range(CALLS):
                for name, client in (("bare", floor), ("ours", mine)):
                    started = time.perf_counter()
                    await client.call_tool("list_models", arguments)
                    times[name].append(time.perf_counter() - started)
            runs.append((statistics.median(times["bare"]), statistics.median(times["ours"])))
    return runs


async def idle_rss(env: dict[str, str]) -> dict[str, float]:
    """Resident memory of each server process after start-up and one `list_models`."""
    sizes: dict[str, float] = {}
    for name, server, marker in (("bare MCPServer", bare(env), b"bare_server.py"),
                                 ("flashsnap-mcp", ours(env), b"flashsnap-mcp")):  # fmt: skip
        async with Client(server) as client:
            await client.call_tool("list_models", {})
            await anyio.sleep(0.5)
            sizes[name] = rss_mib(_server_pid(marker))
    return sizes


async def run_fast() -> str:
    with tempfile.TemporaryDirectory(prefix="flashsnap-bench-") as state_dir, FastUpstream() as upstream:
        env = {**os.environ, **upstream, "FLASHSNAP_STATE_DIR": state_dir}
        runs = await fast_overhead(env)
        starts = await startup(env)
        sizes = await idle_rss(env)
    ratios = [mine / floor for floor, mine in runs]
    rows = [f"| {i + 1} | {floor * 1000:.3f} ms | {mine * 1000:.3f} ms | {mine / floor:.3f}× |"
            for i, (floor, mine) in enumerate(runs)]  # fmt: skip
    bare_start, our_start = statistics.median(starts["bare MCPServer"]), statistics.median(starts["flashsnap-mcp"])
    return "\n".join(
        [
            "## Per-call cost against a fast upstream",
            "",
            f"`list_models` with `workspace_id` given, over stdio in the client's default protocol mode, against an "
            "upstream on loopback that answers in microseconds (`bench/fast_upstream.py`, a process of its own), "
            f"compared with the bare `MCPServer` tool (`bench/bare_server.py`: the same request, the same output "
            f"model). The two servers are called alternately, {CALLS} calls each per run; the figure is the median "
            "of the runs' p50 ratios.",
            "",
            "| run | bare tool p50 | flashsnap-mcp p50 | ratio |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Goal: ≤ 1.05×. Measured: **{statistics.median(ratios):.3f}×** (median of {len(runs)} runs).",
            "",
            f"### Start-up and idle memory, side by side (median of {STARTS} starts; RSS after one call)",
            "",
            "| server | start to first `list_models` answer | idle RSS |",
            "|---|---|---|",
            f"| bare MCPServer with one tool | {bare_start * 1000:.0f} ms | {sizes['bare MCPServer']:.1f} MiB |",
            f"| flashsnap-mcp | {our_start * 1000:.0f} ms ({our_start / bare_start:.2f}×) | "
            f"{sizes['flashsnap-mcp']:.1f} MiB ({sizes['flashsnap-mcp'] / sizes['bare MCPServer']:.2f}×) |",
            "",
            "A plain stdio start imports neither redis-py, nor the Prometheus client, nor the OpenTelemetry SDK "
            "(`tests/test_startup_imports.py`).",
            "",
            f"Reproduce: `make bench BENCH=fast`. Machine: {machine()}.",
        ]
    )


async def paired_cost(variants: dict[str, StdioServerParameters]) -> dict[str, list[float]]:
    """The same round trip on two servers differing in one setting, called in turn (the first is the baseline)."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    (first, first_params), (second, second_params) = variants.items()
    async with (
        Client(first_params, mode="legacy") as off,
        Client(second_params, mode="legacy") as on,
    ):
        clients = ((first, off), (second, on))
        for _, client in clients:
            for _ in range(10):  # warm-up: tokens, connections, caches
                await client.call_tool("list_models", {})
        for _ in range(CALLS):
            for name, client in clients:
                started = time.perf_counter()
                await client.call_tool("list_models", {})
                results[name].append(time.perf_counter() - started)
    return results


async def metrics_cost(env: dict[str, str]) -> dict[str, list[float]]:
    """The same round trip with metrics off (stdio default) and on (FLASHSNAP_METRICS_PORT), called in turn."""
    return await paired_cost({"metrics off": ours(env), "metrics on": ours({**env, "FLASHSNAP_METRICS_PORT": "0"})})


def ratio_rows(calls: dict[str, list[float]], off: list[float]) -> list[str]:
    """A table row per server: its p50 and p99 in ms, and each as a ratio to the `off` server's."""
    return [
        f"| {name} | {quantile(t, 50) * 1000:.2f} ms | {quantile(t, 99) * 1000:.2f} ms | "
        f"{quantile(t, 50) / quantile(off, 50):.3f}× | {quantile(t, 99) / quantile(off, 99):.3f}× |"
        for name, t in calls.items()
    ]


async def run_metrics() -> str:
    with Emulator(EmulatorState()) as emulator:
        env = {**os.environ, **emulator.environment(), "NEUROFLASH_WORKSPACE_ID": catalog.MARKETING_WORKSPACE}
        calls = await metrics_cost(env)
    off = calls["metrics off"]
    rows = ratio_rows(calls, off)
    ratio = quantile(calls["metrics on"], 50) / quantile(off, 50)
    return "\n".join(
        [
            "## Cost of metrics",
            "",
            f"{CALLS} `list_models` round trips over stdio per server, two flashsnap-mcp processes called in turn: "
            "one with metrics off (stdio's default), one recording them (`FLASHSNAP_METRICS_PORT` set, so every "
            "tool call, gate wait and upstream request updates the Prometheus registry).",
            "",
            "| server | p50 | p99 | p50 vs off | p99 vs off |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Goal: within 1.03× of metrics off. Measured: **{ratio:.3f}×** at p50.",
            "",
            f"Reproduce: `make bench BENCH=metrics`. Machine: {machine()}.",
        ]
    )


async def startup(env: dict[str, str]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"bare MCPServer": [], "flashsnap-mcp": []}
    for _ in range(STARTS):
        for name, server in (("bare MCPServer", bare(env)), ("flashsnap-mcp", ours(env))):
            started = time.perf_counter()
            async with Client(server, mode="legacy") as client:
                await client.call_tool("list_models", {})
                results[name].append(time.perf_counter() - started)
    return results


async def relay(env: dict[str, str], state: EmulatorState) -> tuple[list[float], float]:
    """Per-chunk latency from the emulator's send to the client's progress callback, and chunks/s."""
    received: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append(time.time())

    async with Client(ours(env), mode="legacy") as client:
        await client.call_tool("list_workspaces", {})
        lags: list[float] = []
        state.latency_s["chat_chunk"] = 0.005
        for i in range(20):
            received.clear()
            with state.lock:
                state.chunk_times.clear()
            await client.call_tool(
                "generate",
                {"model": "gpt-4.1-mini", "prompt": f"relay {i}", "max_tokens": 500},
                progress_callback=on_progress,
            )
            lags += [r - s for s, r in zip(state.chunk_times, received, strict=True)]
        state.latency_s.clear()
        with state.lock:
            state.chunk_times.clear()
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(
                    client.call_tool, "generate", {"model": "gpt-4.1-mini", "prompt": f"rate {i}", "max_tokens": 500}
                )
        rate = len(state.chunk_times) / (time.perf_counter() - started)
    return lags, rate


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def memory(env: dict[str, str], state: EmulatorState) -> tuple[float, float, int]:
    """Resident memory of the server process idle, and at its peak under 100 concurrent streams."""
    env = {**env, "FLASHSNAP_MAX_CONCURRENT_GENERATIONS": str(STREAMS)}
    async with Client(ours(env), mode="legacy") as client:
        await client.call_tool("list_workspaces", {})
        pid = _server_pid()
        idle = peak = rss_mib(pid)
        state.latency_s["chat_chunk"] = 0.1  # streams of about 2 s, so that all 100 overlap
        finished = 0

        async def generate(i: int) -> None:
            nonlocal finished
            await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": f"mem {i}", "max_tokens": 500})
            finished += 1

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(STREAMS):
                    tg.start_soon(generate, i)
                while finished < STREAMS:
                    peak = max(peak, rss_mib(pid))
                    await anyio.sleep(0.05)
        state.latency_s.clear()
    return idle, peak, state.max_concurrent_streams


def _server_pid(marker: bytes = b"flashsnap-mcp") -> int:
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().split()
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[3]) == me and marker in cmdline:
                return int(proc.name)
    raise RuntimeError("the server process was not found")


async def run() -> str:
    state = EmulatorState()
    with Emulator(state) as emulator, tempfile.TemporaryDirectory(prefix="flashsnap-bench-") as state_dir:
        # The default store (SQLite), in a directory of this run's own: nothing left from an earlier run.
        env = {**os.environ, **emulator.environment(), "NEUROFLASH_WORKSPACE_ID": catalog.MARKETING_WORKSPACE,
               "FLASHSNAP_STATE_DIR": state_dir}  # fmt: skip
        calls = await overhead(env)
        starts = await startup(env)
        lags, rate = await relay(env, state)
        idle, peak, overlapping = await memory(env, state)
    floor = calls["bare MCPServer tool"]
    mine = calls["flashsnap-mcp list_models"]
    rows = [
        f"| {name} | {quantile(t, 50) * 1000:.2f} ms | {quantile(t, 99) * 1000:.2f} ms | "
        f"{quantile(t, 50) / quantile(floor, 50):.2f}× | {quantile(t, 99) / quantile(floor, 99):.2f}× |"
        for name, t in calls.items()
    ]
    bare_start, our_start = statistics.median(starts["bare MCPServer"]), statistics.median(starts["flashsnap-mcp"])
    return "\n".join(
        [
            "## Overhead, start-up, streaming relay, memory",
            "",
            f"### Tool-call overhead ({CALLS} `list_models` round trips over stdio per server, called in turn)",
            "",
            "| path | p50 | p99 | p50 vs bare tool | p99 vs bare tool |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "The bare tool is an `MCPServer` with one tool making the same request with a fixed token and returning "
            "the same output model (`bench/bare_server.py`): no token manager, no scheduler, no error mapping. "
            "Goal: within 1.10× of it. "
            f"Measured: **{quantile(mine, 50) / quantile(floor, 50):.2f}×** at p50.",
            "",
            f"### Start-up (process start to the answer to the first `list_models`, median of {STARTS})",
            "",
            "| server | median | ratio |",
            "|---|---|---|",
            f"| bare MCPServer with one tool | {bare_start * 1000:.0f} ms | 1.00× |",
            f"| flashsnap-mcp | {our_start * 1000:.0f} ms | {our_start / bare_start:.2f}× |",
            "",
            "Goal: within 1.2×.",
            "",
            "### Streaming relay",
            "",
            f"From the emulator sending a chunk to the client's progress callback, over {len(lags)} chunks of 20 "
            f"generations: p50 **{quantile(lags, 50) * 1000:.2f} ms**, p99 **{quantile(lags, 99) * 1000:.2f} ms**. "
            f"With no delay between chunks and 10 generations at once, {rate:.0f} chunks/s were relayed.",
            "",
            "### Memory",
            "",
            f"Resident memory of the stdio server process: **{idle:.1f} MiB** idle, **{peak:.1f} MiB** at the peak of "
            f"{STREAMS} streaming generations started at once ({overlapping} streamed at the same moment).",
            "",
            f"Reproduce: `make bench BENCH=overhead`. Machine: {machine()}.",
        ]
    )


async def run_audit() -> str:
    """The audit log's cost: the same calls with and without FLASHSNAP_AUDIT_LOG, in the same run."""
    with Emulator(EmulatorState()) as emulator, tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, **emulator.environment(), "NEUROFLASH_WORKSPACE_ID": catalog.MARKETING_WORKSPACE}
        audited = {**env, "FLASHSNAP_AUDIT_LOG": f"{directory}/audit.jsonl", "FLASHSNAP_AUDIT_KEY": "b" * 64}
        calls = await paired_cost({"audit log off": ours(env), "audit log on": ours(audited)})
    off = calls["audit log off"]
    rows = ratio_rows(calls, off)
    ratio = quantile(calls["audit log on"], 50) / quantile(off, 50)
    return "\n".join(
        [
            "## Cost of the audit log",
            "",
            f"{CALLS} `list_models` round trips over stdio per server, two flashsnap-mcp processes called in turn: "
            "one without an audit log, one writing a sealed record per call (`FLASHSNAP_AUDIT_LOG`: two HMACs and "
            "one `O_APPEND` write of the line, no fsync).",
            "",
            "| server | p50 | p99 | p50 vs off | p99 vs off |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Goal: within 1.05× of the audit log off. Measured: **{ratio:.3f}×** at p50.",
            "",
            f"Reproduce: `make bench BENCH=audit`. Machine: {machine()}.",
        ]
    )
