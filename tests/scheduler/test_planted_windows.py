"""A window document planted in the store by another writer holds calls no longer than its bounds, on each store.

Whoever can write to the store (the state directory, any client of the Redis keyspace) can plant a gate's window.
Each kind of figure it could plant is tried, on SQLite and on Valkey: the call goes at once when the figure is
forgotten, and once the clock passes the figure's bound when it is clamped (`server/scheduler/bounds.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.clock import FakeClock
from server.context import Budget
from server.httpio import MAX_WINDOW_S
from server.scheduler import bounds, burst
from server.scheduler.gate import Gate, Reservation
from server.state.redis import RedisStore
from server.state.sqlite import FILENAME, SQLiteStore
from server.state.store import Change, Store
from tests.servers import valkey

pytestmark = pytest.mark.anyio
NOW = FakeClock().now()
DAY = 86_400.0
FOREVER = NOW + 1e9

PLANTED: list[tuple[str, dict[str, Any], float]] = [
    # (what was planted, the document, how long it may hold a call at most)
    ("a 429 penalty ten days ahead", {"blocked_until": NOW + 10 * DAY}, 0.0),
    ("a spent budget resetting in ten days", {"limit": 20, "remaining": 0, "reset_at": NOW + 10 * DAY}, 0.0),
    ("a spent budget with no reset and no send", {"limit": 20, "remaining": 0}, 0.0),
    ("a spent budget with no reset, a send just now", {"limit": 20, "remaining": 0, "last_send": NOW}, MAX_WINDOW_S),
    ("a probe in flight for ever", {"flights": {"x": FOREVER}}, bounds.MAX_FLIGHT_S),
    ("a penalty for ever, a send in flight for ever",
     {"blocked_until": FOREVER, "flights": {"x": FOREVER}, "limit": 20}, bounds.MAX_FLIGHT_S),
    # (the ticket's clamp, and the day every rewrite of the window gives the document, coincide here)
    ("an older call waiting for ever", {"limit": 1, "remaining": 1, "waiting": {"x": [0.0, FOREVER, 0.0, "x"]}},
     bounds.MAX_TICKET_S),
    ("a call first in the fair queue for ever, the virtual time far ahead",
     {"limit": 1, "remaining": 1, "virtual": 1e300, "waiting": {"x": [0.0, FOREVER, -1e300, "x"]}},
     bounds.MAX_TICKET_S),
    ("a burst of one learnt for ever, a send in the future", {"limit": 20, "window_s": 60.0, "burst": 1,
     "burst_until": FOREVER, "recent": [[FOREVER, ""]], "answered": 5}, burst.BURST_S + burst.MARGIN_S),
    ("a penalty of a day", {"blocked_until": NOW + DAY}, DAY),
    ("another principal sending for ever at a huge weight",
     {"limit": 20, "remaining": 20, "active": {"x": [0.0, 5000.0, FOREVER]}}, bounds.ACTIVE_S),
]  # fmt: skip


@pytest.fixture(params=["sqlite", "valkey"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[FakeClock], Store]]:
    opened: list[Store] = []
    with valkey(tmp_path) if request.param == "valkey" else _nothing() as server:

        def open_one(clock: FakeClock) -> Store:
            store: Store = (
                RedisStore(f"redis://127.0.0.1:{server.port}/0", prefix="planted:")
                if server is not None
                else SQLiteStore(tmp_path / FILENAME, clock)
            )
            opened.append(store)
            return store

        yield open_one
        for store in opened:
            await store.aclose()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(("what", "doc", "bound"), PLANTED, ids=[p[0] for p in PLANTED])
async def test_a_planted_window_holds_a_call_no_longer_than_its_bound(
    open_store: Callable[[FakeClock], Store], what: str, doc: dict[str, Any], bound: float
) -> None:
    clock = FakeClock(NOW)
    store = open_store(clock)
    await store.update("acct:gate", lambda _: Change(None, doc, ttl_s=100 * DAY))  # a writer sets any TTL
    granted: list[Reservation] = []
    async with Gate("neuralsnap", clock, store=store, key="acct:gate") as gate:

        async def call() -> None:
            granted.append(await gate.acquire(Budget(clock, NOW + 3 * DAY)))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                if not granted:
                    clock.advance(max(0.0, NOW + bound + 1 - clock.now()))  # the bound passes
    assert len(granted) == 1
    # Waits the gate took on the clock (a planted penalty's) are within the bound too.
    assert clock.now() - NOW <= bound + 1


async def test_a_planted_budget_beyond_the_limit_lets_out_no_more_than_the_limit(
    open_store: Callable[[FakeClock], Store],
) -> None:
    clock = FakeClock(NOW)
    store = open_store(clock)
    planted = {"limit": 5, "remaining": 1_000_000, "reset_at": NOW + 60, "window_s": 60.0, "answered": 5}
    await store.update("acct:gate", lambda _: Change(None, planted))
    gate = Gate("neuralsnap", clock, store=store, key="acct:gate")
    for _ in range(5):
        await gate.acquire(Budget(clock, NOW + 30))
    with pytest.raises(Exception, match="rate"):  # the sixth would wait for the reset, past its budget
        await gate.acquire(Budget(clock, NOW + 30))
