"""NeuralSnap's three documented rate models, each served by the emulator, scheduled without a wasted request.

Through real tool calls on a fake clock shared with the emulator: the per-key hourly window, the per-key
per-minute one, and per-endpoint windows with a per-second burst (the rate-limits page's table). The gate
starts with one budget per key and splits an endpoint off only on evidence from the answers.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from server.app import create_app
from server.cli import status
from server.clock import FakeClock, SystemClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import RequestRecord
from server.sandbox.variants import Variants
from server.scheduler.window import Window
from server.state import accounts, layout
from server.state.opening import open_store
from tests.conftest import Connect
from tests.results import data
from tests.test_stdio import params

API = "/neuralsnap/api/v1"  # where the emulator serves NeuralSnap


def sends(state: EmulatorState, route: str) -> list[float]:
    with state.lock:
        return sorted(r.at for r in state.log if r.route == route)


async def fire(client: Client, writes: int, searches: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`writes` snapshots and `searches` searches, all at once; each may wait as long as it needs."""
    saved: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []

    async def write(i: int) -> None:
        saved.append(data(await client.call_tool("snapshot", {"name": f"s{i}", "core": "c", "max_wait_s": 3600})))

    async def search(i: int) -> None:
        found.append(data(await client.call_tool("search_snapshots", {"query": f"q{i}", "max_wait_s": 3600})))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for i in range(max(writes, searches)):
                if i < writes:
                    tg.start_soon(write, i)
                if i < searches:
                    tg.start_soon(search, i)
    return saved, found


def most_in_one_second(times: list[float]) -> int:
    """The most requests that reached the emulator within one of its (aligned) seconds."""
    return max(Counter(math.floor(t) for t in times).values(), default=0)


async def test_per_endpoint_windows_with_bursts_are_paced_at_the_burst_without_a_429() -> None:
    """On real time: a fake clock cannot stand for a per-second burst, since a request sent at one fake instant
    reaches the emulator at a later one whenever another call's wait moves the clock meanwhile."""
    state = EmulatorState()
    state.variants = Variants.profile("per-endpoint")  # free plan: writes and searches 30 a minute, burst 5/s
    state.variants.time_scale = 0.1  # a 6 s "minute"; the burst stays per real second
    with Emulator(state) as emulator:
        settings = Settings.from_env({**emulator.environment(), "FLASHSNAP_STATE": "memory"})
        async with Client(create_app(settings)) as client:
            saved, found = await fire(client, writes=20, searches=20)
    assert len(saved) == 20
    assert len(found) == 20
    assert len(state.snapshots) == 20  # each created once
    for route in ("snapshot_create", "snapshot_search"):
        assert state.count_status(route, 429) == 0
        times = sends(state, route)
        assert len(times) == 20  # not one request wasted
        assert most_in_one_second(times) <= 5  # paced at the page's burst, never bunched


async def test_an_endpoint_is_split_off_only_on_evidence_and_a_key_wide_budget_never_is(
    connect: Connect, state: EmulatorState, clock: FakeClock, state_dir: Path
) -> None:
    state.set_rate_limit(40, 3600.0)  # the hourly model: one budget for the key
    async with connect() as client:
        await fire(client, writes=6, searches=6)
    assert Window.load(await _gate_document(state_dir, clock), clock.now()).separate == {}
    state.variants = Variants.profile("per-endpoint")
    clock.advance(3600)
    async with connect() as client:
        await fire(client, writes=6, searches=6)
    separate = Window.load(await _gate_document(state_dir, clock), clock.now()).separate
    # Whichever of the two answers second with a count that never saw the other's sends is split off;
    # the key's window then holds the other alone.
    assert any(b in (f"GET {API}/snapshots/search", f"POST {API}/snapshots") for b in separate)
    assert all(not b.endswith("}") for b in separate)  # reads by id were never sent, so never split
    shown = await _status(state_dir, clock)
    assert "  endpoint     " in shown  # status shows each endpoint's own window


async def test_a_per_minute_key_window_is_read_from_its_reset_and_used_in_full(
    connect: Connect, state: EmulatorState, clock: FakeClock
) -> None:
    state.variants = Variants.profile("per-minute")  # 100 a minute for the key (the profile page's Pro)
    state.set_rate_limit(20, 3600.0)  # its per-minute limit, here 20; the hourly window length is not used
    async with connect() as client:
        saved, found = await fire(client, writes=30, searches=30)
    assert len(saved) + len(found) == 60
    times = sorted(sends(state, "snapshot_create") + sends(state, "snapshot_search"))
    assert len(times) == 60
    assert state.count_status("snapshot_create", 429) + state.count_status("snapshot_search", 429) == 0
    per_window = Counter(math.floor(t / 60.0) for t in times)
    assert sorted(per_window.values(), reverse=True)[:2] == [20, 20]  # whole windows used, never more


async def _status(state_dir: Path, clock: FakeClock) -> str:
    """What `flashsnap-mcp status` prints for that state directory."""
    store = await open_store("sqlite", clock, state_dir=state_dir)
    try:
        return status.render(await status.gather(store, clock))
    finally:
        await store.aclose()


async def _gate_document(state_dir: Path, clock: FakeClock) -> dict[str, Any] | None:
    """The NeuralSnap gate's shared window document, read from the state directory the servers used."""
    store = await open_store("sqlite", clock, state_dir=state_dir)
    try:
        (account,) = [a for a in await accounts.listed(store) if a.service == "neuralsnap"]
        return await store.get(layout.AccountKeys(account.key).gate)
    finally:
        await store.aclose()


async def test_processes_sharing_a_state_store_pace_each_endpoint_together_without_a_429() -> None:
    """Three stdio processes, one state directory: what one learns (a split endpoint, its burst) paces all."""
    state = EmulatorState(SystemClock())
    state.variants = Variants.profile("per-endpoint")
    state.variants.time_scale = 0.1  # a 6 s "minute": 30 per endpoint fits the whole run
    with Emulator(state) as emulator:
        env = {**emulator.environment(), "FLASHSNAP_MAX_WAIT_S": "60"}

        async def one_process() -> None:
            async with Client(params(env=env)) as client:
                await fire(client, writes=8, searches=8)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one_process)
    for route in ("snapshot_create", "snapshot_search"):
        assert state.count_status(route, 429) == 0
        times = sends(state, route)
        assert len(times) == 24  # not one request wasted
        assert most_in_one_second(times) <= 5


class RunningClock:
    """Real time, run `speed` times faster and moved ahead at will: the emulator and the server share it, so a run
    starts where a test puts it in the upstream's windows, and a window of seconds passes in a fraction of one."""

    def __init__(self, speed: float) -> None:
        self._speed, self._base, self._since = speed, 1_780_000_000.0, time.monotonic()

    def now(self) -> float:
        return self._base + (time.monotonic() - self._since) * self._speed

    def move_to(self, at: float) -> None:
        """Jump (forward) to `at`, Unix seconds."""
        self._base, self._since = at, time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds) / self._speed)


# Per endpoint; the page's table names no limit of 8. Its average (2 a second) fills 6 of 8: its burst fills it, with
# room for the second a 429 holds everything.
UNKNOWN_WINDOW_S, UNKNOWN_LIMIT, UNKNOWN_BURST = 3.0, 8, 4
UNKNOWN_CALLS = 17  # per endpoint: the first window's, a whole window's and more, so a whole window lies between
UNKNOWN_SPEED = 2.0  # the clock runs this many times faster than real time (a burst's margin: 25 ms of it)


def window_use(records: list[RequestRecord]) -> float:
    """The emptiest window's share of the limit, over the windows between the first request's and the last's."""
    accepted = Counter(math.floor(r.at / UNKNOWN_WINDOW_S) for r in records if r.status < 300)
    between = [accepted[k] / UNKNOWN_LIMIT for k in range(min(accepted) + 1, max(accepted))]
    assert between, "no whole window between the first request and the last"
    return min(between)


async def unknown_burst_run(phase: float) -> EmulatorState:
    """17 snapshots and 17 searches fired at once, the first landing at `phase` (a share) of the upstream's window,
    against per-endpoint windows whose limit and burst the rate-limits page does not name."""
    clock = RunningClock(speed=UNKNOWN_SPEED)
    state = EmulatorState(clock)
    state.variants = Variants.profile("per-endpoint")
    state.variants.time_scale = UNKNOWN_WINDOW_S / 60
    state.endpoint_limits = {name: (UNKNOWN_LIMIT, UNKNOWN_BURST) for name in ("write", "search", "read")}
    with Emulator(state) as emulator:
        settings = Settings.from_env({**emulator.environment(), "FLASHSNAP_STATE": "memory"})
        async with Client(create_app(settings, clock=clock)) as client:
            start = (math.floor(clock.now() / UNKNOWN_WINDOW_S) + 1 + phase) * UNKNOWN_WINDOW_S
            clock.move_to(start)
            saved, found = await fire(client, writes=UNKNOWN_CALLS, searches=UNKNOWN_CALLS)
    assert len(saved) == len(found) == UNKNOWN_CALLS
    return state


@pytest.mark.parametrize("phase", [0.1, 0.5, 0.85], ids=["early", "middle", "late"])
async def test_an_unknown_burst_costs_at_most_one_429_per_endpoint_wherever_the_first_request_lands(
    phase: float,
) -> None:
    """The first answer's reset, late in the upstream's window, reads that window as a second long: its average is
    not trusted until a turn was seen, and the burst is found by ramping up, one 429 per endpoint at most; then
    every whole window is used in full."""
    state = await unknown_burst_run(phase)
    assert len(state.snapshots) == UNKNOWN_CALLS  # each created once
    for route in ("snapshot_create", "snapshot_search"):
        with state.lock:
            records = [r for r in state.log if r.route == route]
        assert state.count_status(route, 429) <= 1
        assert len(records) <= UNKNOWN_CALLS + 1  # nothing wasted but the one 429 that taught the burst
        assert window_use(records) >= 0.95
        assert most_in_one_second([r.at for r in records if r.status < 300]) <= UNKNOWN_BURST
