"""Per-principal budgets on the shared stocks (the team file's caps), through the MCP client over real HTTP in
tokens mode: a cap reached is `budget_exhausted` with its period and nothing sent, another principal still goes,
a new period starts afresh, and `check_quota`, the audit log and `/metrics` show what each spent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.auth import budgets
from server.auth import team as teams
from server.cli import status
from server.clock import FakeClock
from server.config import Settings
from server.runtime import open_state
from server.sandbox import Emulator, EmulatorState
from server.sandbox.catalog import MARKETING_WORKSPACE
from server.sandbox.loopback import LoopbackServer
from server.sandbox.records import Fault
from server.transports.http import build_http_app
from tests.conftest import NO_QUESTIONS
from tests.results import data, error
from tests.servers import http_replica, valkey
from tests.test_accounts import client_as
from tests.test_readme_samples import README
from tests.test_store_writer import keys_of, plant, writer
from tests.test_team import TOKENS, as_, entry

# Ten words of prompt and 16 tokens: an estimate of 22 words (10 + 16 x 0.75), more than the emulator writes (16).
PROMPT = "Write one short line about the sea for our shop"
GENERATE = {"model": "gpt-4.1-mini", "prompt": PROMPT, "max_tokens": 16, "workspace_id": MARKETING_WORKSPACE}
ESTIMATE = 10 + 12
CRYSTAL_TEXT = "A long conversation about the sea and the shop, " * 4  # 196 characters: 98 tokens at most
SEARCH = {"query": "sea"}

ServeTeam = Callable[..., AbstractAsyncContextManager[str]]


def team(*entries: str, defaults: str = "") -> str:
    scopes = '[defaults]\nscopes = ["flashsnap:read", "flashsnap:write", "flashsnap:spend"]\n'
    return scopes + defaults + "".join(entries)


@pytest.fixture
def serve(emulator: Emulator, clock: FakeClock, tmp_path: Path) -> ServeTeam:
    """`async with serve(team_text, **settings) as url`: tokens mode with that team file and an audit log."""

    @asynccontextmanager
    async def serving(text: str, **overrides: Any) -> AsyncIterator[str]:
        path = tmp_path / "team.toml"
        path.write_text(text)
        environ = {**NO_QUESTIONS, **emulator.environment(), "FLASHSNAP_TOOLSETS": "all"}
        settings = Settings.from_env(
            environ, transport="streamable-http", auth="tokens", team_file=path, audit_log=tmp_path / "audit.jsonl",
            audit_key="k" * 32, **overrides,
        )  # fmt: skip
        with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
            yield server.url

    return serving


def next_start(period: str, now: float) -> datetime:
    at = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return datetime(at.year, at.month, at.day, tzinfo=UTC) + timedelta(days=1)
    return datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)


# (the cap, its value, the tool and its arguments, the emulator's route, the stock and period it names): every
# budget a team file may set, each met through the tool that spends it.
CAPS = [
    ("words_per_day", 2 * ESTIMATE, "generate", GENERATE, "chat", "words", "day"),
    ("words_per_month", 2 * ESTIMATE, "generate", GENERATE, "chat", "words", "month"),
    ("searches_per_month", 2, "search_snapshots", SEARCH, "snapshot_search", "searches", "month"),
    ("crystallize_tokens_per_month", 250, "crystallize", {"text": CRYSTAL_TEXT}, "crystallize", "crystallize", "month"),
]


@pytest.mark.parametrize(("cap", "value", "tool", "arguments", "route", "stock", "period"), CAPS)
async def test_a_cap_reached_refuses_with_its_period_sends_nothing_and_leaves_others_alone(
    serve: ServeTeam, state: EmulatorState, clock: FakeClock, tmp_path: Path,
    cap: str, value: int, tool: str, arguments: dict[str, Any], route: str, stock: str, period: str,
) -> None:  # fmt: skip
    async with serve(team(entry("alice", **{cap: value}), entry("dan"))) as url:
        async with client_as(url, "alice") as alice:
            served = 0
            for _ in range(10):  # the cap lets a few through, never ten
                before = state.count(route)
                result = await alice.call_tool(tool, arguments)
                if result.is_error:
                    break
                served += 1
            refused = error(result)
            assert state.count(route) == before  # 0 upstream requests for the refused call
            report = data(await alice.call_tool("check_quota", {"workspace_id": MARKETING_WORKSPACE}))
        async with client_as(url, "dan") as dan:
            for _ in range(served + 1):  # dan has no cap: he goes where alice was refused
                data(await dan.call_tool(tool, arguments))
        clock.advance((next_start(period, clock.now()) - datetime.fromtimestamp(clock.now(), UTC)).total_seconds())
        async with client_as(url, "alice") as alice:
            data(await alice.call_tool(tool, arguments))  # a new period: the budget starts afresh
    assert served >= 1
    assert refused["code"] == "budget_exhausted"
    assert (refused["scope"], refused["stock"], refused["period"]) == ("principal", stock, period)
    assert refused["resets_at"] == next_start(period, clock.now() - 1).isoformat()
    assert "reason" not in refused
    row = next(b for b in report["budgets"] if (b["stock"], b["period"]) == (stock, period))
    assert row["limit"] == value
    assert 0 < row["spent"] <= value
    assert row["held"] == 0
    outcomes = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in outcomes if r["principal"] == "alice" and r["tool"] == tool][served] == (
        "budget_exhausted"
    )


async def test_generations_in_flight_of_zero_refuses_every_generation_with_nothing_sent(
    serve: ServeTeam, state: EmulatorState
) -> None:
    async with serve(team(entry("alice", generations_in_flight=0), entry("dan"))) as url:
        async with client_as(url, "alice") as alice:
            refused = error(await alice.call_tool("generate", GENERATE))
        async with client_as(url, "dan") as dan:
            data(await dan.call_tool("generate", GENERATE))
    assert (refused["code"], refused["stock"], refused["period"]) == ("budget_exhausted", "generations_in_flight", None)
    assert state.count("chat") == 1  # dan's


async def test_defaults_cap_every_principal_and_a_callers_own_key_replaces_them(
    serve: ServeTeam, state: EmulatorState
) -> None:
    text = team(entry("alice"), entry("dan", searches_per_month=3), defaults="searches_per_month = 1\n")
    async with serve(text) as url:
        async with client_as(url, "alice") as alice:
            data(await alice.call_tool("search_snapshots", SEARCH))
            assert error(await alice.call_tool("search_snapshots", SEARCH))["stock"] == "searches"
        async with client_as(url, "dan") as dan:
            for _ in range(3):
                data(await dan.call_tool("search_snapshots", SEARCH))
            assert error(await dan.call_tool("search_snapshots", SEARCH))["code"] == "budget_exhausted"
    assert state.count("snapshot_search") == 4


async def test_metrics_and_status_show_what_each_principal_spent(
    serve: ServeTeam, emulator: Emulator, clock: FakeClock, tmp_path: Path
) -> None:
    text = team(entry("alice", words_per_day=1000), entry("ops", "flashsnap:read", "flashsnap:admin"))
    async with serve(text) as url:
        async with client_as(url, "alice") as alice:
            words = data(await alice.call_tool("generate", GENERATE))["words_used"]
            data(await alice.call_tool("search_snapshots", SEARCH))
        async with as_("ops") as http:
            metrics = (await http.get(f"{url}/metrics")).text
    # `flashsnap-mcp status`, reading the store the server shared, with the team file for the caps
    settings = Settings.from_env(emulator.environment(), team_file=tmp_path / "team.toml")
    store = await status.open_shared(settings, clock, "status")
    assert store is not None
    try:
        view = await status.gather(store, clock, teams.load(tmp_path / "team.toml"))
    finally:
        await store.aclose()
    alices = [(a["service"], row) for a in view["accounts"] for row in a["budgets"].get("alice", [])]
    shown = {(service, row["stock"], row["period"]): (row["spent"], row["limit"]) for service, row in alices}
    assert shown[("neuroflash", "words", "day")] == (words, 1000)
    assert shown[("neuroflash", "words", "month")] == (words, None)
    assert shown[("neuralsnap", "searches", "month")] == (1, None)
    assert f"budget       alice: words {words}/1000 today" in status.render(view)
    assert f'flashsnap_principal_spent_total{{principal="alice",stock="words"}} {float(words)}' in metrics
    assert 'flashsnap_principal_spent_total{principal="alice",stock="searches"} 1.0' in metrics
    assert TOKENS["alice"] not in metrics


async def test_without_a_named_caller_nothing_is_counted_or_capped(connect: Any, state: EmulatorState) -> None:
    """Over the in-memory transport (as stdio) nobody is named: generate goes, check_quota lists no budgets."""
    async with connect() as client:
        data(await client.call_tool("generate", GENERATE))
        assert data(await client.call_tool("check_quota", {"workspace_id": MARKETING_WORKSPACE}))["budgets"] == []


def test_the_readme_budgets_example_is_a_valid_team_file() -> None:
    text = README.read_text().split("### Budgets per principal", 1)[1]
    team = teams.parse(text.split("```toml\n", 1)[1].split("```", 1)[0])
    alice, bot = team.principals
    assert (alice.caps.words_per_day, alice.caps.words_per_month, alice.caps.generations_in_flight) == (
        20000,
        200000,
        2,
    )
    assert alice.weight == 3
    assert (bot.caps.words_per_day, bot.caps.searches_per_month, bot.caps.crystallize_tokens_per_month) == (
        5000, 500, 100000,
    )  # fmt: skip
    assert bot.weight == 1


async def test_two_replicas_racing_on_the_last_words_of_a_cap_overspend_by_at_most_one_estimate(
    live: Emulator, tmp_path: Path
) -> None:
    """Real processes on one real Valkey: alice's eight generations at once, four to each replica, against a daily
    cap of a little over two estimates. Each admission holds its estimate in one atomic step of the store, so
    what the replicas let through together stays within the cap and one call's estimate."""
    cap = 2 * ESTIMATE + 6
    path = tmp_path / "team.toml"
    path.write_text(team(entry("alice", words_per_day=cap)))
    outcomes: list[dict[str, Any]] = []
    with valkey(tmp_path) as server, anyio.fail_after(90):
        env = {**live.environment(), "FLASHSNAP_REDIS_URL": server.url, "FLASHSNAP_AUTH": "tokens",
               "FLASHSNAP_TEAM_FILE": str(path), "FLASHSNAP_CONFIRM_WORDS": "0"}  # fmt: skip
        async with contextlib.AsyncExitStack() as stack:
            urls = [await stack.enter_async_context(http_replica(env)) for _ in range(2)]

            go = anyio.Event()

            async def spend(url: str, *, task_status: anyio.abc.TaskStatus[None]) -> None:
                async with client_as(url, "alice") as alice:  # connected first, then all sent at once
                    task_status.started()
                    await go.wait()
                    result = await alice.call_tool("generate", GENERATE)
                outcomes.append(error(result) if result.is_error else data(result))

            async with anyio.create_task_group() as group:
                for url in urls * 4:
                    await group.start(spend, url)
                go.set()
    served = [o for o in outcomes if "words_used" in o]
    refused = [o for o in outcomes if "code" in o]
    assert len(served) + len(refused) == 8
    assert served  # the cap lets some through
    assert refused  # and not all eight
    assert {(o["code"], o["period"], o["stock"]) for o in refused} == {("budget_exhausted", "day", "words")}
    assert live.state.words_charged == sum(o["words_used"] for o in served)
    assert live.state.words_charged <= cap + ESTIMATE  # the bound
    # and tighter here, since each report (16 words) is under its estimate (22): held estimates never pass the cap
    assert all(o["words_used"] <= ESTIMATE for o in served)
    assert live.state.words_charged <= cap
    assert live.state.count("chat") == len(served)  # a refused call sent nothing


async def test_a_hold_left_by_a_process_that_died_runs_out_and_the_budget_comes_back(
    serve: ServeTeam, emulator: Emulator, clock: FakeClock, state: EmulatorState
) -> None:
    """A process that died mid-call never settles: its hold (written here as the server writes one, sealed, into
    the shared store) blocks the cap only until the longest a call may run."""
    cap = 2 * ESTIMATE
    async with serve(team(entry("alice", words_per_day=cap))) as url:
        store = await open_state(Settings.from_env(emulator.environment()), clock)
        try:
            key = keys_of(emulator).neuroflash.budget("alice")
            caps = teams.Caps(words_per_day=cap)
            until = clock.now() + 700.0
            left = await budgets.admit(store, key, caps, budgets.Ask("words", cap), clock.now(), hold=("dead", until))
            assert left is None
        finally:
            await store.aclose()
        async with client_as(url, "alice") as alice:
            held = error(await alice.call_tool("generate", GENERATE))
            clock.advance(701.0)
            data(await alice.call_tool("generate", GENERATE))
    assert (held["code"], held["period"]) == ("budget_exhausted", "day")
    assert "held by calls under way" in held["message"]
    assert state.count("chat") == 1


async def test_a_budget_or_share_planted_by_a_store_writer_refuses_nobody(
    serve: ServeTeam, emulator: Emulator, clock: FakeClock, state: EmulatorState, state_dir: Path
) -> None:
    """Budgets and shares are sealed under the account's secret: one written without it reads as absent."""
    keys = keys_of(emulator).neuroflash
    now = clock.now()
    spent = {"periods": {"day": budgets.day_of(now), "month": budgets.month_of(now)},
             "spent": {"words:day": 10**9, "words:month": 10**9}, "held": {}, "weight": 1}  # fmt: skip
    nothing = {"day": {"id": budgets.day_of(now), "caps": {"alice": 0}}}
    async with serve(team(entry("alice", words_per_day=1000))) as url:
        async with writer({}, state_dir, clock) as raw:
            await plant(raw, keys.budget("alice"), spent)
            await plant(raw, keys.shares(MARKETING_WORKSPACE), nothing)
        async with client_as(url, "alice") as alice:
            data(await alice.call_tool("generate", GENERATE))
            report = data(await alice.call_tool("check_quota", {"workspace_id": MARKETING_WORKSPACE}))
    row = next(b for b in report["budgets"] if (b["stock"], b["period"]) == ("words", "day"))
    assert row["spent"] < 1000
    assert row["share"] is None
    assert state.count("chat") == 1


TWINS = {"twin_ids": ["tw-lena-21", "tw-petra-52"], "question": "Would you click 'Ship small, ship often'?"}


@pytest.mark.parametrize(
    ("cap", "stock", "period"),
    [("words_per_day", "words", "day"), ("words_per_month", "words", "month"),
     ("generations_in_flight", "generations_in_flight", None)],
)  # fmt: skip
async def test_a_twin_chat_answers_to_the_words_budgets_too(
    serve: ServeTeam, state: EmulatorState, cap: str, stock: str, period: str | None
) -> None:
    """neuroflash reports no words for a twin chat: it holds one word and one generation while it runs."""
    async with serve(team(entry("alice", **{cap: 0}), entry("dan"))) as url:
        async with client_as(url, "alice") as alice:
            refused = error(await alice.call_tool("ask_twins", TWINS))
        async with client_as(url, "dan") as dan:
            data(await dan.call_tool("ask_twins", TWINS))
    assert (refused["code"], refused["stock"], refused["period"]) == ("budget_exhausted", stock, period)
    assert state.count("twin_group_chat") == 1  # dan's


async def test_a_budget_refusal_comes_before_any_question_to_the_user(serve: ServeTeam, state: EmulatorState) -> None:
    """A generation large enough to ask first, by a principal whose budget cannot pay for it: refused at once,
    never asked about (a client that cannot ask would otherwise get confirmation_required)."""
    large = {**GENERATE, "max_tokens": 2000}  # 1,510 words at most: above the 1,000 that ask first
    async with serve(team(entry("alice", words_per_day=1200), entry("dan")), confirm_words=1000) as url:
        async with client_as(url, "alice") as alice:
            refused = error(await alice.call_tool("generate", large))
        async with client_as(url, "dan") as dan:
            asked = error(await dan.call_tool("generate", large))
    assert (refused["code"], refused["period"]) == ("budget_exhausted", "day")
    assert asked["code"] == "confirmation_required"  # the same call by someone whose budget allows it asks
    assert state.count("chat") == 0


# (the upstream's failure, what it leaves counted): a refusal spent nothing; one that may have run counts the estimate
FAILURES = [
    (Fault(status=400), "invalid_request", 0),
    (Fault(status=502), "upstream_unavailable", ESTIMATE),
    (Fault(cut_after_chunks=1), "incomplete_stream", ESTIMATE),
]


@pytest.mark.parametrize(("fault", "code", "counted"), FAILURES, ids=[f[1] for f in FAILURES])
async def test_a_failed_generation_gives_its_hold_back_or_counts_its_estimate(
    serve: ServeTeam, state: EmulatorState, fault: Fault, code: str, counted: int
) -> None:
    async with serve(team(entry("alice", words_per_day=1000))) as url, client_as(url, "alice") as alice:
        state.inject("chat", fault)
        assert error(await alice.call_tool("generate", GENERATE))["code"] == code
        report = data(await alice.call_tool("check_quota", {"workspace_id": MARKETING_WORKSPACE}))
    row = next(b for b in report["budgets"] if (b["stock"], b["period"]) == ("words", "day"))
    assert (row["spent"], row["held"]) == (counted, 0)
