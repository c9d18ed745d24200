"""The scarcity guard (FLASHSNAP_SHARE_BELOW), through the MCP client over real HTTP in tokens mode: once a
workspace's words first fall below the threshold, what is left is shared among the principals who spent in the
period, by weight, fixed until the period ends; a refusal says `reason: "share"` and sends nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from server.clock import FakeClock
from server.sandbox import EmulatorState
from server.sandbox.catalog import MARKETING_WORKSPACE
from tests.results import data, error
from tests.test_accounts import client_as
from tests.test_budgets import GENERATE, ServeTeam, next_start, serve, team  # noqa: F401 - a fixture
from tests.test_team import entry

BOOK_S = 31  # the quota book keeps what it read 30 s: past that, the next call reads the lowered quota
BIG = {**GENERATE, "max_tokens": 1000}  # an estimate of 760 words; the emulator writes a few dozen


async def spent(client: Any, period: str) -> tuple[int, int | None]:
    """(words spent this period, the share fixed for it or None), as check_quota shows the caller's own."""
    report = data(await client.call_tool("check_quota", {"workspace_id": MARKETING_WORKSPACE}))
    row = next(b for b in report["budgets"] if (b["stock"], b["period"]) == ("words", period))
    return row["spent"], row["share"]


async def test_a_daily_limit_of_10000_below_2000_left_gives_a_at_most_1000_more_and_b_is_still_served(
    serve: ServeTeam,  # noqa: F811
    state: EmulatorState,
    clock: FakeClock,
) -> None:
    state.set_quota(MARKETING_WORKSPACE, limit_daily=10_000, used_daily=0)
    async with (
        serve(team(entry("alice"), entry("dan"))) as url,
        client_as(url, "alice") as a,
        client_as(url, "dan") as b,
    ):
        data(await a.call_tool("generate", GENERATE))  # both active today
        data(await b.call_tool("generate", GENERATE))
        state.set_quota(MARKETING_WORKSPACE, used_daily=8_100)  # 1,900 left: under 20 % of 10,000
        clock.advance(BOOK_S)
        before, _ = await spent(a, "day")
        for _ in range(50):
            chats = state.count("chat")
            result = await a.call_tool("generate", BIG)
            if result.is_error:
                break
        refused = error(result)
        assert state.count("chat") == chats  # 0 chat requests for the refusal
        after, share = await spent(a, "day")
        data(await b.call_tool("generate", BIG))  # B's share is untouched
    assert after - before <= 1_000
    assert after - before > 0
    assert share == before + 950  # 1,900 by two equal weights
    assert (refused["code"], refused["reason"], refused["period"], refused["scope"]) == (
        "budget_exhausted", "share", "day", "principal",
    )  # fmt: skip
    assert refused["stock"] == "words"
    assert refused["resets_at"] == next_start("day", clock.now()).isoformat()


@dataclass(frozen=True)
class Case:
    """One situation of the guard: the weights, the quota set once A and B are active, the settings, and each
    principal's share of what was left (None: no share fixed)."""

    weights: tuple[float, float]
    quota: dict[str, int]
    period: str
    parts: tuple[int | None, int | None]
    env: dict[str, Any] = field(default_factory=dict)
    newcomer: bool = False  # carol, who had spent nothing when the shares were fixed, asks after
    new_day: bool = False  # the next UTC day begins after the shares were fixed


CASES = {
    "equal weights, a day": Case((1, 1), {"limit_daily": 10_000, "used_daily": 8_100}, "day", (950, 950)),
    "weights 3 to 1": Case((3, 1), {"limit_daily": 10_000, "used_daily": 8_400}, "day", (1_200, 400)),
    "weights 1.5 to 0.5": Case((1.5, 0.5), {"limit_daily": 10_000, "used_daily": 8_400}, "day", (1_200, 400)),
    "exactly 20 % left is not scarce": Case((1, 1), {"limit_daily": 10_000, "used_daily": 8_000}, "day", (None, None)),
    "weights 1 to 4": Case((1, 4), {"limit_daily": 10_000, "used_daily": 9_000}, "day", (200, 800)),
    "the month": Case((1, 1), {"used": 161_000}, "month", (19_500, 19_500)),
    "threshold 0 turns it off": Case(
        (1, 1), {"limit_daily": 10_000, "used_daily": 9_900}, "day", (None, None), env={"share_below": 0}
    ),
    "a higher threshold": Case(
        (1, 1), {"limit_daily": 10_000, "used_daily": 6_000}, "day", (2_000, 2_000), env={"share_below": 0.5}
    ),
    "active after the shares were fixed": Case(
        (1, 1), {"limit_daily": 10_000, "used_daily": 8_100}, "day", (950, 950), newcomer=True
    ),
    "a new day": Case((1, 1), {"limit_daily": 10_000, "used_daily": 8_100}, "day", (950, 950), new_day=True),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_the_shares_of_scarce_words(
    serve: ServeTeam,  # noqa: F811
    state: EmulatorState,
    clock: FakeClock,
    case: Case,
) -> None:
    text = team(entry("alice", weight=case.weights[0]), entry("dan", weight=case.weights[1]), entry("carol"))
    async with (
        serve(text, **case.env) as url,
        client_as(url, "alice") as a,
        client_as(url, "dan") as b,
        client_as(url, "carol") as c,
    ):
        data(await a.call_tool("generate", GENERATE))
        data(await b.call_tool("generate", GENERATE))
        before = [(await spent(p, case.period))[0] for p in (a, b)]
        state.set_quota(MARKETING_WORKSPACE, "tokens", **case.quota)
        clock.advance(BOOK_S)
        data(await a.call_tool("generate", GENERATE))  # the first call that finds the words scarce fixes them
        shares = [(await spent(p, case.period))[1] for p in (a, b)]
        expected = [None if part is None else was + part for was, part in zip(before, case.parts, strict=True)]
        assert shares == expected
        if case.newcomer:
            chats = state.count("chat")
            refused = error(await c.call_tool("generate", GENERATE))
            assert (refused["code"], refused["reason"], refused["period"]) == ("budget_exhausted", "share", "day")
            assert state.count("chat") == chats
            assert (await spent(c, "day")) == (0, 0)
            data(await b.call_tool("generate", GENERATE))  # the others keep theirs
        if case.new_day:
            start = next_start("day", clock.now())
            clock.advance((start - datetime.fromtimestamp(clock.now(), UTC)).total_seconds())
            assert await spent(a, "day") == (0, None)
            data(await c.call_tool("generate", GENERATE))  # nobody's share holds in the new day
            data(await a.call_tool("generate", BIG))
