"""neuroflash against every reading of the vendors' pages: chat paths, the model list's route, error bodies,
workspace envelopes; and quota verdicts that never outlive their reason.

Each test sets the emulator's variants (read at each request) and asserts on its counters: chat requests,
words charged, and the gateway's 404s (`state.unrouted`, per path).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest
from mcp import Client

from server.cli.check import run_checks
from server.clock import FakeClock
from server.config import Settings
from server.neuroflash.routes import MODELS_PATH, OVERVIEW_CHAT_PATH, REFERENCE_CHAT_PATH
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.records import Fault
from server.sandbox.variants import Variants
from tests.conftest import Connect
from tests.results import data, error

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Write a tagline for a tea shop."}
ERROR_STATUSES = [400, 401, 403, 404, 422, 429, 500, 502, 503]  # every status the errors page lists (5xx: three)


def use(state: EmulatorState, *profiles: str, **fields: Any) -> None:
    state.variants = dataclasses.replace(Variants.profile(*profiles), **fields)


# --- the chat path and the model list's route -------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "chat_404s", "models_404s"),
    [
        ("default", {}, 0),  # the reference page's path only
        ("overview-chat-path", {REFERENCE_CHAT_PATH: 1}, 0),  # one 404, then the other path: no probe of the same
        ("both-chat-paths", {}, 0),
        ("no-models-route", {}, 2),
    ],
)
async def test_generate_works_spending_once_in_each_chat_variant(
    client: Client, state: EmulatorState, profile: str, chat_404s: dict[str, int], models_404s: int
) -> None:
    use(state, profile)
    with anyio.fail_after(30):
        first = data(await client.call_tool("generate", GENERATE))
        second = data(await client.call_tool("generate", GENERATE))
    assert first["text"]
    assert first["words_used"] > 0
    assert state.count("chat") == 2  # one answered request per generate: nothing sent twice
    assert state.count_status("chat", 200) == 2
    assert state.words_charged == first["words_used"] + second["words_used"]  # each generation charged once
    # The path (and a missing model list) is learned once: the second generate goes straight to it.
    chat_paths = {path: n for path, n in state.unrouted.items() if path != MODELS_PATH}
    assert chat_paths == chat_404s
    assert state.unrouted[MODELS_PATH] == models_404s


async def test_generate_with_the_model_list_missing_lets_the_upstream_judge_the_model(
    client: Client, state: EmulatorState
) -> None:
    use(state, "no-models-route")
    state.add_workspace("free-ws", "Free", plan="free")
    err = error(await client.call_tool("generate", {**GENERATE, "model": "gpt-4.1", "workspace_id": "free-ws"}))
    assert err["code"] == "model_not_available"  # the upstream's 403 said so, not an unknown workspace
    assert state.count("chat") == 1
    assert state.words_charged == 0


async def test_list_models_without_its_route_says_the_list_is_unavailable_and_which_path(
    client: Client, state: EmulatorState
) -> None:
    use(state, "no-models-route")
    err = error(await client.call_tool("list_models", {}))
    assert err["code"] == "route_missing"
    assert "model list is unavailable" in err["message"]
    assert MODELS_PATH in err["message"]
    assert "generate does not need it" in err["hint"]
    assert "workspace" not in err["message"].lower()
    assert err["paths_tried"] == [MODELS_PATH]
    # list_models always asks, so a route that comes back is seen at once.
    use(state, "default")
    assert data(await client.call_tool("list_models", {}))["models"]


async def test_a_5xx_on_the_model_list_is_transient_and_keeps_the_model_check(
    client: Client, state: EmulatorState
) -> None:
    state.inject("models", Fault(status=503, times=4))  # every attempt of one read
    with anyio.fail_after(30):
        assert data(await client.call_tool("generate", GENERATE))["text"]  # the upstream judged the model
        err = error(await client.call_tool("generate", {**GENERATE, "model": "no-such-model"}))
    assert err["code"] == "model_not_available"
    assert "nothing was sent" in err["message"]
    assert state.count("chat") == 1  # the unknown model was refused from the list, read again


async def test_a_remembered_path_that_becomes_a_missing_route_is_forgotten_and_relearned(
    client: Client, state: EmulatorState
) -> None:
    assert data(await client.call_tool("generate", GENERATE))  # learns the reference path
    use(state, "overview-chat-path")  # a deploy moves the route
    assert data(await client.call_tool("generate", GENERATE))
    assert data(await client.call_tool("generate", GENERATE))
    assert state.count_status("chat", 200) == 3
    assert state.unrouted[REFERENCE_CHAT_PATH] == 1  # one 404 teaches the new path; the old is not tried again
    assert state.unrouted[OVERVIEW_CHAT_PATH] == 0


async def test_a_pinned_chat_path_is_the_only_one_tried(connect: Connect, state: EmulatorState) -> None:
    use(state, "overview-chat-path")
    async with connect(env={"NEUROFLASH_CHAT_PATH": OVERVIEW_CHAT_PATH}) as client:
        assert data(await client.call_tool("generate", GENERATE))
    assert sum(state.unrouted.values()) == 0
    async with connect(env={"NEUROFLASH_CHAT_PATH": REFERENCE_CHAT_PATH.lstrip("/")}) as client:
        err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "route_missing"
    assert "NEUROFLASH_CHAT_PATH" in err["message"] + err["hint"]
    assert err["maybe_processed"] is False
    assert "workspace" not in err["message"].lower()
    assert state.count("chat") == 1  # the first generate only: the pinned path is never swapped
    assert state.words_charged > 0


async def test_an_unknown_workspace_is_named_as_such_whatever_the_chat_path(
    client: Client, state: EmulatorState
) -> None:
    use(state, "overview-chat-path")
    assert data(await client.call_tool("generate", GENERATE))  # learns the overview path
    state.add_workspace("ghost", "Ghost")
    assert data(await client.call_tool("check_quota", {"workspace_id": "ghost"}))  # the quota book has room
    del state.workspaces["ghost"]  # deleted upstream since
    err = error(await client.call_tool("generate", {**GENERATE, "workspace_id": "ghost"}))
    assert err["code"] == "not_found"
    assert "ghost" in err["message"]
    assert state.unrouted[OVERVIEW_CHAT_PATH] == 0  # a workspace 404 never swaps the path


async def test_check_finds_the_chat_path_without_spending_words(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    use(state, "overview-chat-path", "no-models-route")
    env = {k: v for k, v in emulator.environment().items() if not k.startswith("NEURALSNAP_")}
    report = await run_checks(Settings.from_env(env), clock)
    found = {(f.service, f.item): f for f in report.findings}
    chat = found[("neuroflash", "chat path")]
    assert chat.status == "ok"
    assert chat.facts["chat_path"] == OVERVIEW_CHAT_PATH
    assert OVERVIEW_CHAT_PATH in chat.detail
    assert found[("neuroflash", "model list")].status == "warn"
    assert report.ok
    assert state.words_charged == 0
    assert state.count_status("chat", 200) == 0  # probes only, each refused before generating


async def test_check_fails_naming_the_variable_when_the_pinned_path_is_no_route(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    env = {**emulator.environment(), "NEUROFLASH_CHAT_PATH": "/api/nowhere/chat"}
    report = await run_checks(Settings.from_env(env), clock)
    chat = next(f for f in report.findings if f.item == "chat path")
    assert chat.status == "fail"
    assert "NEUROFLASH_CHAT_PATH" in (chat.fix or "")
    assert state.words_charged == 0


# --- errors by status, whatever the body ---------------------------------------------------------------


EXPECTED = {400: "invalid_request", 401: "credentials_rejected", 403: "access_denied", 404: "not_found",
            422: "invalid_request", 429: "rate_limited", 500: "upstream_unavailable", 502: "upstream_unavailable",
            503: "upstream_unavailable"}  # fmt: skip


@pytest.mark.parametrize("bodies", ["codeless", "not_json"])
@pytest.mark.parametrize("status", ERROR_STATUSES)
async def test_a_codeless_or_html_error_on_generate_is_one_request_and_a_clear_error(
    connect: Connect, state: EmulatorState, status: int, bodies: str
) -> None:
    use(state, error_bodies=bodies)
    # A 429 naming no wait (a quota's); a 401 that a fresh token does not cure.
    state.inject("chat", Fault(status=status, message="Injected upstream failure.", times=2 if status == 401 else 1))
    async with connect() as client:
        with anyio.fail_after(30):
            err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == EXPECTED[status]
    assert "internal error" not in err["message"].lower()
    assert ("Injected upstream failure." in err["message"]) is (bodies == "codeless")  # quoted; HTML is not
    if status == 403:
        assert catalog.MARKETING_WORKSPACE in err["message"]
    if status >= 500:
        assert err["maybe_processed"] is True
    # One generation request; a 401 is replayed once with a fresh token (documented), and a 404 that does not say
    # what it missed is confirmed with one probe the route refuses before generating (a 400, no words).
    probes = 1 if status == 404 else 0
    assert state.count("chat") == 1 + (status == 401) + probes
    assert state.count_status("chat", 400) == (status == 400) + probes
    assert state.count("unrouted") == 0
    assert state.words_charged == 0


@pytest.mark.parametrize("bodies", ["codes", "codeless", "not_json"])
async def test_fair_use_reached_after_admission_is_named_as_fair_use(
    client: Client, state: EmulatorState, bodies: str
) -> None:
    use(state, error_bodies=bodies)
    assert not (await client.call_tool("check_quota", {})).is_error  # the quota book says "room left"
    state.set_quota(catalog.MARKETING_WORKSPACE, fair_use_reached=True)
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "fair_use_reached"  # a codeless 403: the quota read afresh says why
    assert state.count("chat") == 1
    assert state.words_charged == 0


@pytest.mark.parametrize("bodies", ["codeless", "not_json"])
async def test_a_codeless_quota_429_names_the_period(client: Client, state: EmulatorState, bodies: str) -> None:
    use(state, error_bodies=bodies)
    assert not (await client.call_tool("check_quota", {})).is_error
    state.set_quota(catalog.MARKETING_WORKSPACE, used_daily=20_000)  # spent elsewhere, e.g. in the web app
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "quota_exhausted"
    assert err["period"] == "daily"
    assert state.count("chat") == 1
    assert state.words_charged == 0


@pytest.mark.parametrize("bodies", ["codeless", "not_json"])
async def test_a_codeless_422_on_generate_quotes_the_upstream(
    client: Client, state: EmulatorState, bodies: str
) -> None:
    use(state, error_bodies=bodies)
    state.inject("chat", Fault(status=422, message="model: unknown model"))
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "invalid_request"
    assert "422" in err["message"]
    assert state.count("chat") == 1


# --- workspace list envelopes ---------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", ["data", "bare", "hal"])
async def test_every_workspace_envelope_is_read(
    connect: Connect, emulator: Emulator, state: EmulatorState, clock: FakeClock, envelope: str
) -> None:
    use(state, workspace_envelope=envelope)
    state.add_workspace("second-ws", "Second")
    async with connect() as client:
        listed = data(await client.call_tool("list_workspaces", {}))
    assert {w["id"] for w in listed["workspaces"]} == {catalog.MARKETING_WORKSPACE, "second-ws"}
    env = {k: v for k, v in emulator.environment().items() if not k.startswith("NEURALSNAP_")}
    report = await run_checks(Settings.from_env({**env, "NEUROFLASH_WORKSPACE_ID": "second-ws"}), clock)
    found = {(f.service, f.item): f for f in report.findings}
    assert found[("neuroflash", "workspaces")].status == "ok"
    assert report.ok


# --- verdicts that refuse work are re-checked -----------------------------------------------------------


async def test_a_restored_daily_quota_is_seen_by_another_runtime_and_fair_use_is_then_named(
    connect: Connect, state: EmulatorState, clock: FakeClock
) -> None:
    # Two runtimes on one SQLite state directory, as two processes of one user are.
    state.set_quota(catalog.MARKETING_WORKSPACE, used_daily=20_000)
    async with connect() as first, connect() as second:
        refused = error(await first.call_tool("generate", GENERATE))
        assert refused["period"] == "daily"
        state.set_quota(catalog.MARKETING_WORKSPACE, used_daily=0)  # an admin restores it
        clock.advance(6)
        assert data(await second.call_tool("generate", GENERATE))["text"]
        assert state.count("chat") == 1
        state.set_quota(catalog.MARKETING_WORKSPACE, fair_use_reached=True)
        clock.advance(6)
        blocked = error(await first.call_tool("generate", GENERATE))
    assert blocked["code"] == "fair_use_reached"  # not "daily quota spent"
    assert state.count("chat") <= 2  # refused up front, or by the upstream's 403: never with words spent
    assert state.count_status("chat", 200) == 1


async def test_a_confirmed_spent_quota_is_still_refused_with_no_chat_request(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    state.set_quota(catalog.MARKETING_WORKSPACE, used_daily=20_000)
    assert error(await client.call_tool("generate", GENERATE))["period"] == "daily"
    quota_reads = state.count("quotas")
    clock.advance(2)  # fresh: refused from the book, no request
    assert error(await client.call_tool("generate", GENERATE))["period"] == "daily"
    assert state.count("quotas") == quota_reads
    clock.advance(6)  # older than 5 s: one quota read confirms it
    assert error(await client.call_tool("generate", GENERATE))["period"] == "daily"
    assert state.count("quotas") == quota_reads + 1
    assert state.count("chat") == 0
