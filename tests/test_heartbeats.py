"""Waits send a heartbeat at least every 3 s, so a client whose timeout progress resets never gives up on one."""

from __future__ import annotations

import itertools

from mcp import Client

from server.clock import FakeClock
from server.sandbox import EmulatorState
from tests.results import data


async def test_a_long_wait_beats_every_few_seconds(client: Client, state: EmulatorState, clock: FakeClock) -> None:
    state.set_rate_limit(1, 12)
    clock.advance(12 - clock.now() % 12)  # at the start of a window: the next one is 12 s away
    data(await client.call_tool("search_snapshots", {"query": "x"}))
    beats: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        beats.append(clock.now())

    clock.sleeps.clear()
    data(await client.call_tool("search_snapshots", {"query": "x"}, progress_callback=on_progress))
    assert sum(clock.sleeps) >= 12  # it waited for the window
    assert max(clock.sleeps) <= 3.0  # and never longer than 3 s without a heartbeat
    assert len(beats) >= 12 / 3
    assert all(later - earlier <= 3.0 for earlier, later in itertools.pairwise(beats))
