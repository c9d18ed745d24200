"""When the user is asked: only when it matters, only after everything that costs nothing, one rule for a yes.

A plain `generate` in a default install goes through unasked with a bound the server fits under the threshold;
a call that would be refused is refused before any question; the operator decides what is asked; only a JSON
`true` is a yes in either era; a client that cannot receive a pushed question is treated as one that cannot ask.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.loopback import LoopbackServer
from server.tooling.consent import MIN_FITTED_TOKENS, WORDS_PER_TOKEN, fitted_max_tokens, generate_words
from server.transports.http import build_http_app
from tests.conftest import MODES, Connect, sent
from tests.results import data, error
from tests.test_consent import DEFAULT, SNAPSHOT, User, saved, still_there
from tests.test_stdio import params
from tests.transports import http_client

CHAT = "chat"
DELETE = "snapshot_delete"
VOICE = catalog.BRAND_VOICES[0]


@asynccontextmanager
async def default_install(
    transport: str, emulator: Emulator, clock: FakeClock, mode: str, user: User | None = None, **env: str
) -> AsyncIterator[Client]:
    """A client of a server with the product's defaults (no FLASHSNAP_CONFIRM_WORDS), over `transport`."""
    environ = {**emulator.environment(), **DEFAULT, **env}
    if transport == "stdio":
        async with Client(params(env=environ), mode=mode, elicitation_callback=user) as client:
            yield client
        return
    settings = Settings.from_env(environ, transport="streamable-http", toolsets=("all",))
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
        async with http_client(server.url, mode, elicitation=user) as client:
            yield client


# --- a plain generate: bounded, never asked -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_plain_generate_in_a_default_install_answers_with_a_bounded_text_and_no_question(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, transport: str, mode: str
) -> None:
    """A client that declares no elicitation (claude.ai, ChatGPT, Claude Desktop, Gemini CLI, the Inspector)."""
    with anyio.fail_after(60):
        async with default_install(transport, emulator, clock, mode) as client:
            result = data(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "A haiku on tea."}))
    assert result["text"]
    assert result["words_used"] > 0
    assert result["max_tokens"] == 1024
    (body,) = sent(state, CHAT)
    assert body["max_tokens"] == 1024  # a bound reached the upstream: no call spends the model's whole limit


@pytest.mark.parametrize(
    ("prompt_words", "bound", "asked"),
    [
        (1, 1024, False),  # the default bound: 768 words of answer, 769 in all
        (232, 1024, False),  # 232 + 768 = 1,000: still within
        (233, 1022, False),  # lowered: 233 + 1,022 * 0.75 = 999.5
        (600, 533, False),  # 600 + 399.75
        (925, 100, False),  # the least it lowers to: 925 + 75
        (926, 1024, True),  # 98 tokens would fit: asked instead of a stub of an answer
        (1000, 1024, True),  # the prompt alone is the whole threshold
        (5000, 1024, True),
    ],
)
async def test_the_default_bound_is_lowered_to_fit_under_the_threshold_after_the_prompts_words(
    connect: Connect, state: EmulatorState, prompt_words: int, bound: int, asked: bool
) -> None:
    user = User("accept")
    args = {"model": "gpt-4.1-mini", "prompt": " ".join(["word"] * prompt_words)}
    async with connect(env=DEFAULT, elicitation=user) as client:
        result = data(await client.call_tool("generate", args))
    assert result["max_tokens"] == bound
    assert sent(state, CHAT)[0]["max_tokens"] == bound
    assert len(user.asked) == int(asked)
    assert fitted_max_tokens(1024, 1000, prompt_words) == bound  # the rule the instructions and README state
    assert (generate_words(prompt_words, bound) > 1000) == asked


async def test_the_brand_voices_and_systems_words_count_with_the_prompts(
    connect: Connect, state: EmulatorState
) -> None:
    system = " ".join(["brief"] * 200)
    args = {"model": "gpt-4.1-mini", "prompt": "A tagline.", "system": system, "brand_voice_id": VOICE["id"]}
    async with connect(env=DEFAULT, elicitation=User("accept")) as client:
        result = data(await client.call_tool("generate", args))
    (body,) = sent(state, CHAT)
    words = sum(len(m["content"].split()) for m in body["messages"])
    assert words > 200 + 2  # the voice's prompt is in
    assert body["max_tokens"] == result["max_tokens"] == min(1024, math.floor((1000 - words) / WORDS_PER_TOKEN))


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"FLASHSNAP_DEFAULT_MAX_TOKENS": "5"}, {}, "the server's default bound"),
        ({}, {"max_tokens": 5}, "the max_tokens given"),
    ],
    ids=["default", "given"],
)
async def test_a_text_cut_at_its_bound_says_so_and_how_to_get_more(
    connect: Connect, env: dict[str, str], args: dict[str, Any], says: str
) -> None:
    async with connect(env={**DEFAULT, **env}) as client:
        result = data(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi", **args}))
    assert result["finish_reason"] == "length"
    assert result["max_tokens"] == 5
    assert says in result["note"]
    assert "larger max_tokens" in result["note"]
    assert "asks the user" in result["note"]


async def test_a_finished_text_carries_no_note(connect: Connect) -> None:
    async with connect(env=DEFAULT) as client:
        result = data(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi"}))
    assert result["finish_reason"] == "stop"
    assert result["note"] is None


# --- refusals come before any question ------------------------------------------------------------------------

LARGE = {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 4000}  # 3,001 words: asked by default


def _spent_daily(state: EmulatorState) -> None:
    state.set_quota(
        catalog.MARKETING_WORKSPACE, used_daily=state.quota(catalog.MARKETING_WORKSPACE, "tokens").limit_daily
    )


REFUSALS: list[tuple[str, Any, str, dict[str, Any], str]] = [
    ("unknown model", None, "generate", {**LARGE, "model": "no-such-model"}, "model_not_available"),
    ("spent daily quota", _spent_daily, "generate", LARGE, "quota_exhausted"),
    (
        "fair use",
        lambda s: s.set_quota(catalog.MARKETING_WORKSPACE, fair_use_reached=True),
        "generate",
        LARGE,
        "fair_use_reached",
    ),
    ("missing brand voice", None, "generate", {**LARGE, "brand_voice_id": "bv-nope"}, "not_found"),
    ("missing snapshot", None, "delete_snapshot", {"id": "3f2b8c1e-9d4a-4e6b-8c2d-1a2b3c4d5e6f"}, "not_found"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("can_ask", [True, False], ids=["asks", "cannot-ask"])
@pytest.mark.parametrize(("case", "arrange", "tool", "args", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_a_call_that_would_be_refused_is_refused_before_any_question(
    connect: Connect,
    state: EmulatorState,
    mode: str,
    can_ask: bool,
    case: str,
    arrange: Any,
    tool: str,
    args: dict[str, Any],
    code: str,
) -> None:
    if arrange is not None:
        arrange(state)
    user = User("accept")
    async with connect(mode=mode, env=DEFAULT, toolsets=("all",), elicitation=user if can_ask else None) as client:
        refused = error(await client.call_tool(tool, args))
    assert refused["code"] == code  # not confirmation_required: nothing is asked that cannot happen
    assert user.asked == []
    assert state.count(CHAT) == 0
    assert state.count(DELETE) == 0


# --- the operator decides what is asked; a decline says what it cannot know -----------------------------------


class Host(User):
    """A host that answers the question itself, as Codex CLI does (within milliseconds, whatever its user chose)."""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["cancel", "decline"])
async def test_a_host_that_answers_for_the_user_gets_a_decline_naming_the_setting_that_stops_asking(
    connect: Connect, state: EmulatorState, mode: str, action: str
) -> None:
    host = Host(action)
    async with connect(mode=mode, env=DEFAULT, toolsets=("all",), elicitation=host) as client:
        snapshot_id = await saved(client)
        refused = error(await client.call_tool("delete_snapshot", {"id": snapshot_id}))
    assert refused["code"] == "declined"
    assert "FLASHSNAP_CONFIRM_DELETE" in refused["message"]
    assert "FLASHSNAP_CONFIRM_WORDS" in refused["message"]
    assert "answer such questions themselves" in refused["message"]
    assert "The user" not in refused["message"]  # it cannot know a person saw the question
    assert state.count(DELETE) == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("off", ["0", "false", "NO", "off"])
async def test_with_confirm_delete_off_a_delete_goes_through_with_no_question(
    connect: Connect, state: EmulatorState, mode: str, off: str
) -> None:
    host = Host("cancel")
    env = {**DEFAULT, "FLASHSNAP_CONFIRM_DELETE": off}
    async with connect(mode=mode, env=env, toolsets=("all",), elicitation=host) as client:
        snapshot_id = await saved(client)
        assert data(await client.call_tool("delete_snapshot", {"id": snapshot_id}))["deleted"]
    assert host.asked == []
    assert state.count(DELETE) == 1
    assert state.count("snapshot_get") == 0  # no question, so no read to spare one either


@pytest.mark.parametrize("mode", MODES)
async def test_the_question_reads_well_to_a_person(connect: Connect, mode: str) -> None:
    user = User("decline")
    async with connect(mode=mode, env=DEFAULT, toolsets=("all",), elicitation=user) as client:
        snapshot_id = await saved(client)
        await client.call_tool("delete_snapshot", {"id": snapshot_id})
        await client.call_tool("generate", LARGE)
        await client.call_tool("crystallize", {"text": "x" * 5_000})
    delete, generate, crystallize = (q.message for q in user.asked)
    assert delete == f"Delete the snapshot {snapshot_id} from your NeuralSnap brain? It cannot be undone."
    assert "may use up to about 3,001 words" in generate
    assert "'gpt-4.1-mini'" in generate
    assert "2,500" in crystallize
    assert "crystallize tokens" in crystallize
    for message in (delete, generate, crystallize):
        assert "FLASHSNAP" not in message
        assert "quota words" not in message
        assert "max_tokens" not in message


# --- one rule for a yes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)  # pushed on 2025-11-25 ("legacy"), in rounds on 2026-07-28 ("auto")
@pytest.mark.parametrize("answer", ["yes", "true", "True", 1, "1", 0, None, ["true"]], ids=lambda a: f"confirm={a!r}")
async def test_only_a_json_true_is_a_yes_in_both_eras(
    connect: Connect, state: EmulatorState, mode: str, answer: Any
) -> None:
    user = User("accept", {"confirm": answer})
    async with connect(mode=mode, env=DEFAULT, toolsets=("all",), elicitation=user) as client:
        snapshot_id = await saved(client)
        refused = error(await client.call_tool("delete_snapshot", {"id": snapshot_id}))
    assert refused["code"] == "declined"
    assert state.count(DELETE) == 0
    assert SNAPSHOT["name"] == state.snapshots[snapshot_id]["name"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_accept_that_leaves_the_box_out_is_not_a_yes(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    """A form client that applies no defaults shows the box unticked, and, like an HTML form, leaves an
    unticked box out of what it submits: `accept` with `{}`. The server does not fill in its own default
    (True): only an explicit `confirm: true` is the user's yes."""
    user = User("accept", {})
    async with connect(mode=mode, toolsets=("all",), elicitation=user) as client:
        snapshot_id = await saved(client)
        err = error(await client.call_tool("delete_snapshot", {"id": snapshot_id}))
    assert len(user.asked) == 1
    assert err["code"] == "declined"
    assert state.count(DELETE) == 0
    assert still_there(state, snapshot_id)


# --- who can really be asked -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("stateless", "asked"), [("1", False), ("0", True)], ids=["stateless", "stateful"])
async def test_a_2025_client_that_can_elicit_on_stateless_http_gets_confirmation_required(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, stateless: str, asked: bool
) -> None:
    user = User("accept")
    env = {**emulator.environment(), **DEFAULT, "FLASHSNAP_HTTP_STATELESS": stateless}
    settings = Settings.from_env(env, transport="streamable-http", toolsets=("all",))
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with http_client(server.url, "legacy", elicitation=user) as client:
            snapshot_id = await saved(client)
            first = await client.call_tool("delete_snapshot", {"id": snapshot_id})
            if asked:
                assert data(first)["deleted"]
            else:
                assert error(first)["code"] == "confirmation_required"
                assert state.count(DELETE) == 0
                assert data(await client.call_tool("delete_snapshot", {"id": snapshot_id, "confirm": True}))["deleted"]
    assert len(user.asked) == int(asked)
    assert state.count(DELETE) == 1


def test_the_fitted_bound_rule_at_its_edges() -> None:
    assert fitted_max_tokens(1024, 0, 10_000) == 1024  # no threshold: the default as it is
    assert fitted_max_tokens(300, 1000, 1) == 300  # a default below the room is not raised
    room = 1000 - math.ceil(MIN_FITTED_TOKENS * WORDS_PER_TOKEN)
    assert fitted_max_tokens(1024, 1000, room) == MIN_FITTED_TOKENS
    assert fitted_max_tokens(1024, 1000, room + 1) == 1024


async def test_the_instructions_follow_the_operators_settings(connect: Connect) -> None:
    async with connect(env={**DEFAULT, "FLASHSNAP_CONFIRM_DELETE": "0"}, toolsets=("all",)) as client:
        said = client.instructions or ""
    assert "delete_snapshot asks" not in said
    assert "without max_tokens sends the server's own bound" in said
    assert "Nothing is asked that would be refused anyway" in said
