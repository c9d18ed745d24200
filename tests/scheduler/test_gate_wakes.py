"""Waiting calls are woken by the store's announcements, not by polling it, and only by changes that may free them."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import redis

from server.clock import FakeClock
from server.config import Settings
from server.context import Budget
from server.runtime import open_state
from server.scheduler import gate as gate_module
from server.scheduler.admit import ANSWERS_OUT, CAME_FIRST, FINDING_BURST, may_lift, quiet_for
from server.scheduler.gate import Gate, Reservation
from server.scheduler.window import Window
from server.state.layout import AccountKeys
from tests.servers import valkey

pytestmark = pytest.mark.anyio
GATE = AccountKeys("live:" + "0" * 24).gate  # a gate document as the layout names one (left plain by the sealing)
NOW = 1_780_000_000.0


async def test_a_call_waiting_on_one_replica_goes_when_another_replica_settles_without_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No poll for ten minutes: only the announcement of the probe's answer can let the waiting call go.
    monkeypatch.setattr(gate_module, "HEARD_POLL_S", 600.0)
    monkeypatch.setattr(gate_module, "LOOK_POLL_S", 600.0)
    clock = FakeClock()
    with valkey(tmp_path) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        # As the server opens its store: the fallback wrapper, and the sealing one, over Redis.
        settings = Settings.from_env({"FLASHSNAP_REDIS_URL": url, "FLASHSNAP_REDIS_PREFIX": "w:"})
        first, second = [await open_state(settings, clock) for _ in range(2)]
        counts = redis.Redis(port=server.port)
        prober = Gate("neuralsnap", clock, store=first, key=GATE)
        granted: list[Reservation] = []
        async with Gate("neuralsnap", clock, store=second, key=GATE) as waiter:
            probe = await prober.acquire(Budget(clock, clock.now() + 30))  # learning the limit: one probe at a time
            counts.config_resetstat()

            async def call() -> None:
                granted.append(await waiter.acquire(Budget(clock, clock.now() + 30)))

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    while waiter._main.hold is None:  # noqa: ASYNC110 - until it waits for the probe's answer
                        await anyio.sleep(0.01)
                    assert granted == []
                    reset = str(int(clock.now()) + 2)
                    headers = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "19", "x-ratelimit-reset": reset}
                    await prober.answered(probe, headers, status=201)
            stats = {k.removeprefix("cmdstat_"): v["calls"] for k, v in counts.info("commandstats").items()}
        await first.aclose()
        await second.aclose()
    assert len(granted) == 1
    # The waiting call asked twice (held, then let out), the answer was settled once and announced once.
    assert stats["publish"] == 1
    assert stats["evalsha"] <= 4  # and at most one renewal of a send in flight


SEEN = Window(limit=20, remaining=3, safe=2, burst=None, flights={"a": 1e10})
SPENT = Window(limit=20, remaining=0, reset_at=1e10, flights={"a": 1e10})


@pytest.mark.parametrize(
    ("why", "said", "lifts"),
    [
        (ANSWERS_OUT, {"in_flight": 2, "remaining": 3, "safe": 2, "burst": None}, False),  # one answer of three
        (ANSWERS_OUT, {"in_flight": 0, "remaining": 0, "safe": 2, "burst": None}, True),  # the last answer
        (ANSWERS_OUT, {"in_flight": 0, "remaining": 0}, True),  # ...of a window whose reset is unknown
        (ANSWERS_OUT, {"in_flight": 0, "remaining": 1}, True),
        (ANSWERS_OUT, {"in_flight": 2, "remaining": 5, "safe": 2, "burst": None}, True),  # budget given back
        (CAME_FIRST, {"in_flight": 3, "remaining": 2, "safe": 2, "burst": None}, False),  # the budget only fell
        (CAME_FIRST, {"in_flight": 3, "remaining": 4, "safe": 2, "burst": None, "forgot": False}, True),
        (CAME_FIRST, {"in_flight": 3, "remaining": 3, "safe": 2, "burst": None, "forgot": True}, True),  # one left
        (FINDING_BURST, {"in_flight": 1, "remaining": 3, "safe": 3, "burst": None}, True),  # one more is safe
        (FINDING_BURST, {"in_flight": 1, "remaining": 3, "safe": 2, "burst": 2}, True),  # the burst found
        (FINDING_BURST, {"in_flight": 1, "remaining": 3, "safe": 2, "burst": None}, False),
        (ANSWERS_OUT, {}, True),  # unreadable: a look costs one decision, a missed wake a poll
        ("something new", {"in_flight": 1, "remaining": 3, "safe": 2, "burst": None}, True),
    ],
)
def test_only_an_announcement_that_may_free_a_waiting_call_wakes_it(
    why: str, said: dict[str, object], lifts: bool
) -> None:
    assert may_lift(why, SEEN, said) is lifts


@pytest.mark.parametrize(
    ("said", "lifts"),
    [
        ({"in_flight": 0, "remaining": 0}, False),  # the last answer, nothing left: the reset frees it, by the clock
        ({"in_flight": 0, "remaining": 2}, True),  # a report with room left
        ({"in_flight": 1, "remaining": 0, "forgot": True}, True),
    ],
)
def test_a_spent_window_waits_for_its_reset_not_for_its_last_answer(said: dict[str, object], lifts: bool) -> None:
    assert may_lift(ANSWERS_OUT, SPENT, said) is lifts


@pytest.mark.parametrize(
    ("why", "seen", "quiet"),
    [
        (CAME_FIRST, Window(remaining=2, reset_at=NOW + 1.5), 1.5),  # until the next budget
        (CAME_FIRST, Window(remaining=0), 0.0),  # no reset known: keep looking
        (ANSWERS_OUT, Window(remaining=0, reset_at=NOW + 4, flights={"a": NOW + 6}), 4.0),
        (ANSWERS_OUT, Window(blocked_until=NOW + 30, flights={"a": NOW + 6, "b": NOW + 2}), 2.0),  # a lease runs out
        (FINDING_BURST, Window(remaining=5, reset_at=NOW + 4, flights={"a": NOW + 6}), 0.0),
        (ANSWERS_OUT, Window(remaining=0, reset_at=NOW - 1, flights={"a": NOW + 6}), 0.0),  # overdue: look now
    ],
)
def test_a_call_told_of_changes_looks_again_by_itself_only_when_time_may_free_it(
    why: str, seen: Window, quiet: float
) -> None:
    assert quiet_for(why, seen, NOW) == quiet
