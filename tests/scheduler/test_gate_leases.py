"""A send in flight on a shared store is a short lease: a process that dies mid-request frees it in seconds."""

from __future__ import annotations

from pathlib import Path

import anyio

from server.clock import FakeClock
from server.context import Budget
from server.scheduler.gate import FLIGHT_LEASE_S, Gate, Reservation
from server.state.sqlite import FILENAME, SQLiteStore


async def test_a_process_killed_with_its_probe_in_flight_holds_the_others_up_for_a_lease_only(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    dead_store, live_store = (SQLiteStore(tmp_path / FILENAME, clock) for _ in range(2))
    dead = Gate("neuralsnap", clock, store=dead_store, key="acct:gate", flight_ttl_s=70)
    # Its first request learns the limit, so everyone else waits for its answer; then it is killed.
    probe = await dead.acquire(Budget(clock, clock.now() + 30))
    assert probe.tracked
    granted: list[Reservation] = []
    async with Gate("neuralsnap", clock, store=live_store, key="acct:gate", flight_ttl_s=70) as live:

        async def call() -> None:
            granted.append(await live.acquire(Budget(clock, clock.now() + 30)))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                assert granted == []  # waiting for the probe's answer...
                clock.advance(FLIGHT_LEASE_S)  # ...which never comes: its lease runs out, not its 70 s timeout
    assert len(granted) == 1
    await dead_store.aclose()
    await live_store.aclose()


async def test_a_live_process_keeps_its_send_reserved_while_the_request_is_out(tmp_path: Path) -> None:
    clock = FakeClock()
    mine, other = (SQLiteStore(tmp_path / FILENAME, clock) for _ in range(2))
    lease = 0.3  # renewed every 0.1 s of real time

    async def reserved_until(reservation: Reservation) -> float:
        doc = await other.get("acct:gate")
        assert doc is not None
        return float(doc["flights"][reservation.id])

    async with Gate("neuralsnap", clock, store=mine, key="acct:gate", flight_lease_s=lease) as gate:
        reservation = await gate.acquire(Budget(clock, clock.now() + 30))
        with anyio.fail_after(10):
            for _ in range(5):  # the request is out for longer than several leases
                clock.advance(lease / 2)
                while await reserved_until(reservation) < clock.now() + lease / 2:  # noqa: ASYNC110 - as another process sees it
                    await anyio.sleep(0.01)  # until the renewal has run on the moved clock
        await gate.answered(reservation, {})
        assert reservation.id not in ((await other.get("acct:gate")) or {}).get("flights", {})
    await mine.aclose()
    await other.aclose()
