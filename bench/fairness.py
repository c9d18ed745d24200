"""Fair turns at one shared window: a late principal behind a busy one, weights 1:3, and a principal alone.

One window of 20 requests per 2 s (the emulator on the real clock), `flashsnap-mcp` replicas as subprocesses in
`tokens` mode with two named principals, ann and bob: on one replica, and ann and bob on two replicas of one
Valkey. Each case runs 3 times; the table holds the median and every run. The order of the sends is the order
the emulator created the snapshots (tests/test_fairness.py holds the same cases, smaller, to their bounds).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from bench.report import machine
from server.clock import SystemClock
from server.sandbox import Emulator, EmulatorState
from tests.test_fairness import backlogged, created, save, sent_before, topology, until_spent

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
LIMIT, WINDOW_S = 20, 2.0
BUSY = 100  # ann's calls queued at once
TOPOLOGIES = ["team on one replica", "replicas on one valkey"]


def _emulator() -> Emulator:
    state = EmulatorState(SystemClock())
    state.set_rate_limit(LIMIT, WINDOW_S)
    return Emulator(state)


async def late(kind: str, work: Path) -> tuple[float, float]:
    """ann queues 100 calls; bob calls once while they wait: (bob's place among the sends after it arrived, 1 the
    first; the seconds bob's call took)."""
    with _emulator() as live:
        async with topology(kind, live, work) as open_, open_("ann") as ann, open_("bob") as bob:
            await save(bob, "warm", 0)
            async with anyio.create_task_group() as calls:
                for i in range(BUSY):
                    calls.start_soon(save, ann, "ann", i)
                reset = await until_spent(live.state, LIMIT)
                started = time.perf_counter()
                await save(bob, "bob", 0)
                took = time.perf_counter() - started
                order = created(live.state)
                before = sent_before(live.state, reset)
                calls.cancel_scope.cancel()
    return order.index("bob") - before + 1, took


async def weighted(kind: str, work: Path) -> tuple[float, float]:
    """ann (weight 1) and bob (weight 3) both backlogged: (bob's share of sends 21 to 100, 429s)."""
    with _emulator() as live:
        async with topology(kind, live, work, weights=(1, 3)) as open_:
            order = await backlogged(open_, live.state, (60, 120), sends=(LIMIT, 100))
        return order.count("bob") / len(order), live.state.count_status("snapshot_create", 429)


async def alone(kind: str, work: Path) -> tuple[float, float]:
    """ann alone (weight 3), 100 calls: (the lowest share of the limit sent in a window after the first and before
    the last, 429s)."""
    with _emulator() as live:
        async with (
            topology(kind, live, work, weights=(3, 1)) as open_,
            open_("ann") as ann,
            anyio.create_task_group() as calls,
        ):
            for i in range(BUSY):
                calls.start_soon(save, ann, "ann", i)
        with live.state.lock:
            at = [r.at for r in live.state.log if r.route == "snapshot_create"]
        windows = Counter(math.floor(t / WINDOW_S) for t in at)
        spanned = [windows[k] for k in range(min(windows), max(windows) + 1)]
        inner = spanned[1:-1] or spanned
        return min(inner) / LIMIT, live.state.count_status("snapshot_create", 429)


Case = Callable[[str, Path], Awaitable[tuple[float, float]]]


async def _row(name: str, kind: str, case: Case, shown: Callable[[float, float], str], work: Path) -> str:
    runs: list[tuple[float, float]] = []
    for n in range(RUNS):
        where = work / f"{name}-{kind}-{n}".replace(" ", "-")
        where.mkdir(parents=True)
        runs.append(await case(kind, where))
    median = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    row = f"| {name} | {kind} | {shown(*median)} | {'; '.join(shown(*r) for r in runs)} |"
    print(row, flush=True)
    return row


async def run() -> str:
    with tempfile.TemporaryDirectory(prefix="flashsnap-bench-") as tmp:
        work = Path(tmp)
        rows = [
            *[await _row("bob late behind ann's 100", k, late, lambda p, s: f"send {p:.0f}, {s:.2f} s", work)
              for k in TOPOLOGIES],
            *[await _row("weights 1:3, both backlogged", k, weighted, lambda b, t: f"bob {b:.0%}, {t:.0f} 429s",
                         work) for k in TOPOLOGIES],
            await _row("ann alone, 100 calls", TOPOLOGIES[0], alone,
                       lambda u, t: f"{u:.0%} of each window, {t:.0f} 429s", work),
        ]  # fmt: skip
    return "\n".join(
        [
            "## Fair turns between principals",
            "",
            f"One window of {LIMIT} requests per {WINDOW_S:.0f} s; `flashsnap-mcp` replicas (subprocesses) in "
            "`tokens` mode with two named principals, ann and bob: on one replica, and ann and bob on two "
            "replicas of one Valkey. **bob late**: ann queues 100 `snapshot` calls; once the window is spent, "
            "bob calls once: bob's place among the sends of the window that opens after it arrived (1 is the "
            "first; first come, first served would make it about 81st), and how long its call took. **Weights "
            "1:3**: ann (weight 1) queues 60 calls and bob (weight 3) 120 at once: bob's share of sends 21 to "
            "100 (the first window, while the calls arrive, is not counted). **ann alone** (weight 3): the "
            "lowest share of the limit it sent in a window, the first and last windows aside, and the upstream's "
            f"429s. The median of {RUNS} runs, and every run.",
            "",
            "| case | setup | median | runs |",
            "|---|---|---|---|",
            *rows,
            "",
            "Goals: bob among the first 2 sends; bob's share within 70-80 %; a lone principal 100 % of each "
            "window and 0 429s. Across replicas each process shows the shared window only its head call, so the "
            "window keeps each principal's last tag let out for 0.25 s: a call whose tag is past another sending "
            "principal's next one waits 50 ms for it (the first run, before that, gave bob about 50 % on two "
            "replicas).",
            "",
            f"Reproduce: `make bench BENCH=fairness`. Machine: {machine()}.",
        ]
    )
