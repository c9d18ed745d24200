"""What the shared store does per call as replicas are added: counted by the store itself, not timed.

The scheduling benchmark's 200 `snapshot` calls under 20 requests per 2 s window, fired at once over 1 and 16
(and, with `BENCH_REPLICAS=1,16,32`, 32) Streamable HTTP replicas on one Valkey, and over as many stdio
processes on one SQLite state directory. Valkey is metered by `INFO commandstats` deltas (every command,
those inside scripts and the publishes included) and its CPU; SQLite by its write transactions (a trigger in
the benchmark's copy of the database counts each document written). Each setup runs 3 times; the table holds
the medians and the machine's load average around the runs. An idle replica is metered for 10 s after a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import redis
from mcp import Client

from bench.overhead import ours
from bench.report import machine
from bench.scheduling import CALLS, LIMIT, WINDOW_S, Outcome, routes, snapshot_body
from bench.shared import base_env
from server.clock import SystemClock
from server.sandbox import Emulator, EmulatorState
from server.state.sqlite import FILENAME
from tests.scheduler.test_document_size import busy_document, size
from tests.servers import http_replica, valkey

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
IDLE_S = 10.0
COUNTS = [int(n) for n in os.environ.get("BENCH_REPLICAS", "1,16").split(",")]
WRITES = """
CREATE TABLE IF NOT EXISTS docs (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE bench_writes (n INTEGER NOT NULL);
INSERT INTO bench_writes VALUES (0);
CREATE TRIGGER bench_insert AFTER INSERT ON docs BEGIN UPDATE bench_writes SET n = n + 1; END;
CREATE TRIGGER bench_update AFTER UPDATE ON docs BEGIN UPDATE bench_writes SET n = n + 1; END;
"""


@dataclass
class Run:
    outcome: Outcome
    per_call: float  # store commands (Valkey) or write transactions (SQLite) per snapshot call
    scripts: float = 0.0  # Valkey: EVALSHA per call
    publishes: float = 0.0  # Valkey: PUBLISH per call (inside scripts)
    cpu_ms: float = 0.0  # Valkey: CPU per call
    idle_per_s: float = 0.0  # Valkey: commands per second of one idle replica
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after

    @property
    def share(self) -> float:
        """Accepted per window over the limit, every window but the first (the first request lands anywhere in
        it, so it may hold fewer) and the last (what was left)."""
        windows = self.outcome.windows()[1:-1]
        return sum(windows) / (len(windows) * LIMIT) if windows else 1.0


def _document_sizes() -> str:
    """The window document at its busiest in this run, as the gate's own steps build it (bytes as stored)."""
    sizes = {n: busy_document(n) for n in (1, 16, 32)}
    waiting = len(json.dumps(sizes[32]["waiting"], separators=(",", ":")))
    return (
        "The window document every decision reads (and most rewrite whole), at its busiest here: a window's "
        "whole budget sent within a second, 19 of its 20 sends still in flight, and one waiting call of each other "
        "replica (`tests/scheduler/test_document_size.py` builds it with the gate's own steps): "
        + ", ".join(f"{size(doc):,} bytes at {n} replica{'s' if n > 1 else ''}" for n, doc in sizes.items())
        + f"; the 31 waiting calls' tickets are {waiting:,} bytes of the last. Before each send stopped naming its "
        "bucket (40 bytes) and each bucket's report its fields: 2,334, 3,209 and 4,143 bytes. `status` reads "
        "nothing a decision does not, so nothing moved beside the document."
    )


def _stats(db: redis.Redis) -> tuple[dict[str, int], float]:
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in db.info("commandstats").items()}
    cpu = db.info("cpu")
    return calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if k not in ("info", "config|resetstat")}


@contextlib.asynccontextmanager
async def _replicas(env: dict[str, str], n: int) -> AsyncIterator[list[Client]]:
    """`n` replicas started together, and max(12, n) sessions spread over them."""
    async with contextlib.AsyncExitStack() as stack:
        urls: list[str] = []

        async def start() -> None:
            urls.append(await stack.enter_async_context(_replica(env)))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(start)
        yield [await stack.enter_async_context(Client(f"{urls[s % n]}/mcp")) for s in range(max(12, n))]


def _replica(env: dict[str, str]) -> contextlib.AbstractAsyncContextManager[str]:
    """`tests.servers.http_replica`, given minutes to start: 32 Python processes starting at once on 2 loaded
    cores take longer than the tests' 30 s (and each asks less often meanwhile)."""
    return http_replica(env, within_s=300, poll_s=0.2)


async def warm(clients: list[Client]) -> None:
    """One `list_models` per session before the count starts: each replica's token, connections and first
    look at the store are its start-up, not the calls' work (the token requests are still counted)."""
    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(client.call_tool, "list_models", {})


async def snapshots(clients: list[Client]) -> int:
    """CALLS snapshots spread round-robin over the clients, all at once; how many succeeded."""
    succeeded = 0

    async def one(client: Client, i: int) -> None:
        nonlocal succeeded
        result = await client.call_tool("snapshot", snapshot_body(i))
        succeeded += not result.is_error

    async with anyio.create_task_group() as tg:
        for i in range(CALLS):
            tg.start_soon(one, clients[i % len(clients)], i)
    return succeeded


async def on_valkey(work: Path, n: int) -> Run:
    state = EmulatorState(SystemClock())
    state.set_rate_limit(LIMIT, WINDOW_S)
    load = os.getloadavg()[0]
    with Emulator(state) as emulator, valkey(work) as server:
        db = redis.Redis(port=server.port)
        env = base_env(emulator, FLASHSNAP_REDIS_URL=server.url)
        async with _replicas(env, n) as clients:
            await warm(clients)
            (before, cpu_before), started = _stats(db), time.perf_counter()
            succeeded = await snapshots(clients)
            elapsed = time.perf_counter() - started
            after, cpu_after = _stats(db)
            await anyio.sleep(2.0)  # the last renewals of sends just settled run out
            idle_from, _ = _stats(db)
            await anyio.sleep(IDLE_S)
            idle_to, _ = _stats(db)
        db.close()
        outcome = Outcome(f"{n} replicas", succeeded, routes(emulator), elapsed, state.count("token"))
    spent = _delta(before, after)
    return Run(
        outcome, sum(spent.values()) / CALLS, spent.get("evalsha", 0) / CALLS, spent.get("publish", 0) / CALLS,
        (cpu_after - cpu_before) * 1000 / CALLS, sum(_delta(idle_from, idle_to).values()) / IDLE_S / n,
        (load, os.getloadavg()[0]),
    )  # fmt: skip


async def on_sqlite(work: Path, n: int) -> Run:
    state = EmulatorState(SystemClock())
    state.set_rate_limit(LIMIT, WINDOW_S)
    directory, database = _counted_database(work)
    load = os.getloadavg()[0]
    with Emulator(state) as emulator:
        env = base_env(emulator, FLASHSNAP_STATE_DIR=str(directory))
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(ours(env))) for _ in range(n)]
            await warm(clients)
            before, started = _writes(database), time.perf_counter()
            succeeded = await snapshots(clients)
            elapsed, after = time.perf_counter() - started, _writes(database)
        outcome = Outcome(f"{n} processes", succeeded, routes(emulator), elapsed, state.count("token"))
    return Run(outcome, (after - before) / CALLS, load=(load, os.getloadavg()[0]))


def _counted_database(work: Path) -> tuple[Path, Path]:
    """A fresh private state directory whose database counts the documents written into it."""
    directory = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    directory.chmod(0o700)
    database = directory / FILENAME
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.executescript(WRITES)
    database.chmod(0o600)
    return directory, database


def _writes(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(db.execute("SELECT n FROM bench_writes").fetchone()[0])


def _median(runs: list[Run], field: str) -> float:
    return statistics.median(float(getattr(r, field)) for r in runs)


def _row(store: str, n: int, runs: list[Run]) -> str:
    def med(field: str) -> float:
        return _median(runs, field)

    throttled = statistics.median(r.outcome.throttled for r in runs)
    tokens = statistics.median(r.outcome.token_requests or 0 for r in runs)
    share = statistics.median(r.share for r in runs)
    done = statistics.median(r.outcome.succeeded for r in runs)
    loads = ", ".join(f"{r.load[0]:.1f}→{r.load[1]:.1f}" for r in runs)
    if store == "valkey":
        return (f"| {n} HTTP replicas, Valkey | {done:.0f}/{CALLS} | {med('per_call'):.2f} | {med('scripts'):.2f} | "
                f"{med('publishes'):.2f} | {med('cpu_ms'):.2f} ms | {med('idle_per_s'):.2f} | {share:.1%} | "
                f"{throttled:.0f} | {tokens:.0f} | {loads} |")  # fmt: skip
    return (f"| {n} stdio processes, SQLite | {done:.0f}/{CALLS} | {med('per_call'):.2f} | | | | | {share:.1%} | "
            f"{throttled:.0f} | {tokens:.0f} | {loads} |")  # fmt: skip


async def run() -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="flashsnap-bench-") as tmp:
        for store, measure in (("valkey", on_valkey), ("sqlite", on_sqlite)):
            for n in COUNTS:
                runs = [await measure(Path(tmp), n) for _ in range(RUNS)]
                rows.append(_row(store, n, runs))
                print(rows[-1], flush=True)
    return "\n".join(
        [
            "## What the store does per call",
            "",
            f"{CALLS} `snapshot` calls fired at once under {LIMIT} requests per {WINDOW_S:.0f} s window, after one "
            "`list_models` per session (each replica's token and connections: its start-up, not counted), over "
            "Streamable HTTP replicas (subprocesses, at least 12 sessions spread "
            "over them) on one Valkey, and over stdio processes on one SQLite state directory. Counted by the "
            "store: Valkey's `INFO commandstats` deltas of every command (those run inside scripts and the "
            "publishes included) and its CPU; SQLite's document writes (each a `BEGIN IMMEDIATE` transaction), "
            "counted by a trigger. An idle replica is metered for 10 s after its run. Medians of "
            f"{RUNS} runs; the load average (1 minute) before and after each run, on a shared 2-core machine.",
            "",
            "| setup | calls done | store commands (Valkey) or write transactions (SQLite) per call | scripts "
            "per call | publishes per call | Valkey CPU per call | idle replica, commands/s | accepted per "
            "window after the first (share of limit) | upstream 429s | token requests | load (each run) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Goals: commands (Valkey) and write transactions (SQLite) per call at 16 replicas or processes at "
            "most 2× those at 1; an idle replica at most 1 command a second; 0 upstream 429s; ≥ 98 % of the "
            "limit used per window; 1 token request.",
            "",
            _document_sizes(),
            "",
            f"Reproduce: `make bench BENCH=store_work` (`BENCH_REPLICAS=1,16,32` adds 32). Machine: {machine()}.",
        ]
    )
