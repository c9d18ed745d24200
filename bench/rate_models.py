"""NeuralSnap's three documented rate models: flashsnap-mcp's 429s, window use and time against the reachable minimum.

For each model the emulator serves, snapshots and searches are fired at once through the MCP client (one
process), on real time with a scaled "minute": the key's hourly window, the key's per-minute window, and
per-endpoint per-minute windows with the rate-limits page's per-second burst. Each model runs three
times; the table gives the median and lists every run.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import anyio
from mcp import Client

from bench.report import machine
from server.app import create_app
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import RateRule, RequestRecord
from server.sandbox.variants import Variants

RUNS = 3
WRITES = SEARCHES = 60
ROUTES = {"snapshot_create": "write", "snapshot_search": "search"}


@dataclass(frozen=True)
class Model:
    name: str
    profile: str
    limit: int  # the key's (hourly, per-minute) or each endpoint's (per endpoint) limit per window
    window_s: float
    time_scale: float = 1.0
    calls: int = WRITES  # snapshots, and as many searches
    endpoint_limits: tuple[tuple[str, int, int], ...] = ()  # (endpoint, limit, burst) the page does not name


MODELS = (
    Model("hourly per key (window scaled to 4 s)", "default", 40, 4.0),
    Model("per minute per key (minute scaled to 4 s)", "per-minute", 40, 4.0, time_scale=4.0 / 60),
    Model("per endpoint, burst 5/s (minute scaled to 12 s)", "per-endpoint", 30, 12.0, time_scale=12.0 / 60),
    Model(
        "per endpoint, 12 per 5 s, burst 4/s (not in the page's table)",
        "per-endpoint",
        12,
        5.0,
        time_scale=5.0 / 60,
        calls=30,
        endpoint_limits=(("write", 12, 4), ("search", 12, 4), ("read", 12, 4)),
    ),
)


@dataclass(frozen=True)
class Run:
    throttled: int
    window_use: float  # accepted per full window after the first, over the limit
    span_s: float
    minimum_s: float

    @property
    def ratio(self) -> float:
        return self.span_s / self.minimum_s if self.minimum_s > 0 else 1.0


def earliest_last(first: float, n: int, rule: RateRule) -> float:
    """When the last of `n` requests could go at the earliest, from `first`, under fixed aligned windows and bursts."""
    t, used, burst_used = first, Counter[int](), Counter[int]()
    for _ in range(n):
        while True:
            w, s = math.floor(t / rule.window_s), math.floor(t / rule.burst_s)
            if used[w] >= rule.limit:
                t = (w + 1) * rule.window_s
            elif rule.burst is not None and burst_used[s] >= rule.burst:
                t = (s + 1) * rule.burst_s
            else:
                break
        used[w] += 1
        burst_used[s] += 1
    return t


def judge(state: EmulatorState, log: list[RequestRecord]) -> Run:
    key = next(iter(state.api_keys))
    per_key = state.variants.rate_model != "per_endpoint"
    groups: dict[str, list[RequestRecord]] = {}
    for r in log:
        groups.setdefault("key" if per_key else ROUTES[r.route], []).append(r)
    first = min(r.at for r in log)
    uses: list[float] = []
    minimum = 0.0
    for bucket, records in groups.items():
        rule = state.rate_rule(key, "write" if per_key else bucket)
        accepted = Counter(math.floor(r.at / rule.window_s) for r in records if r.status < 300)
        full = [accepted[k] for k in range(min(accepted) + 1, max(accepted))]  # not the first nor the last
        uses += [n / rule.limit for n in full]
        minimum = max(minimum, earliest_last(first, len([r for r in records if r.status < 300]), rule) - first)
    span = max(r.at for r in log) - first
    return Run(sum(r.status == 429 for r in log), min(uses, default=1.0), span, minimum)


async def once(model: Model) -> Run:
    state = EmulatorState()
    state.variants = Variants.profile(model.profile)
    state.variants.time_scale = model.time_scale
    state.set_rate_limit(model.limit, model.window_s)
    if model.endpoint_limits:
        state.endpoint_limits = {name: (limit, burst) for name, limit, burst in model.endpoint_limits}
    with Emulator(state) as emulator:
        settings = Settings.from_env({**emulator.environment(), "FLASHSNAP_STATE": "memory"}, max_wait_s=600)
        async with Client(create_app(settings)) as client, anyio.create_task_group() as tg:
            for i in range(model.calls):
                tg.start_soon(client.call_tool, "snapshot", {"name": f"b{i}", "core": "c"})
                tg.start_soon(client.call_tool, "search_snapshots", {"query": f"q{i}"})
        with state.lock:
            log = [r for r in state.log if r.route in ROUTES]
    return judge(state, log)


async def run() -> str:
    started = time.perf_counter()
    rows, runs_listed = [], []
    for model in MODELS:
        runs = [await once(model) for _ in range(RUNS)]
        med = statistics.median
        rows.append(
            f"| {model.name} | {med(r.throttled for r in runs):.0f} | {med(r.window_use for r in runs):.1%} | "
            f"{med(r.span_s for r in runs):.1f} s | {med(r.minimum_s for r in runs):.1f} s | "
            f"{med(r.ratio for r in runs):.2f}× |"
        )
        runs_listed.append(
            f"- {model.name}: "
            + "; ".join(
                f"{r.throttled} × 429, {r.window_use:.1%}, {r.span_s:.1f} s / {r.minimum_s:.1f} s ({r.ratio:.2f}×)"
                for r in runs
            )
        )
    return "\n".join(
        [
            "## NeuralSnap's three rate models",
            "",
            f"{WRITES} `snapshot` and {SEARCHES} `search_snapshots` calls fired at once through the MCP client, "
            "one process, real time, against the emulator serving each of the rate models NeuralSnap's pages "
            "document (docs/upstream-contract.md): one hourly budget per key, one per-minute budget per key, and "
            "per-endpoint per-minute budgets with the rate-limits page's per-second burst (the free plan's "
            "30 a minute and 5 a second for writes and for searches); and, as a vendor could change them any day, "
            "per-endpoint budgets whose burst the page's table does not name (12 per 5 s and 4 a second per "
            "endpoint, 30 + 30 calls: the gate ramps up from the window's average rate, or from one a second until it "
            "has seen a window turn, and a 429 teaches it the burst). "
            "Windows are scaled so a run takes seconds; "
            "the burst stays per real second. Median of "
            f"{RUNS} runs.",
            "",
            "| rate model | upstream 429s | window use after the first | first to last request "
            "| reachable minimum | ratio |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "Window use is the fullest window's share of the limit, over every window between the first and the "
            "last (the lowest such share is shown). The reachable minimum is the earliest time the upstream's own "
            "rules (fixed aligned windows, the per-second burst, whole-second resets) let the last request go, "
            "from the run's first request. Goals: 0 upstream 429s (per endpoint: at most one per endpoint, to "
            "learn a burst), ≥ 98 % (hourly) or ≥ 95 % window use after the first window, ≤ 1.1× the minimum.",
            "",
            "All runs (429s, window use, span / minimum):",
            "",
            *runs_listed,
            "",
            f"Reproduce: `make bench BENCH=rate_models` ({time.perf_counter() - started:.0f} s). Machine: {machine()}.",
        ]
    )
