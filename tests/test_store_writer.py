"""What a writer of the state store without the upstream secret can make the server do: nothing but forget.

Whoever can write the state store (the SQLite file's directory, any client of the Redis keyspace) plants each
kind of document the server acts on, in the backend's own format, as the server itself would have written
it but unsealed: a token, a remembered failure, a fetch lease, a quota verdict, a brand voice's prompt, a
learned route, a listing a client is shown, NeuralSnap's plan. Through the real MCP client, the emulator's
counters show the server sends no request it would not have sent, uses no planted token (the emulator sees
only tokens it issued), shows no planted text, and refuses nothing. A sealed document copied to another key
does not open there either. What a deletion can still do is bounded: a used yes counts again only until its
question's deadline. Everything runs on SQLite and on a real Valkey.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, ElicitResult, InputRequiredResult, InputResponses, PromptReference

from server.cli.status import gather
from server.clock import FakeClock
from server.config import Settings
from server.credentials import lease
from server.runtime import open_state
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.neuralsnap_app import new_snapshot
from server.state import layout
from server.state.redis import RedisStore
from server.state.sqlite import FILENAME, SQLiteStore
from server.state.store import Change, Doc, Store
from server.tooling.consent import ANSWER_TTL_S
from server.upstream.opening import account_key
from tests.conftest import Connect, sent
from tests.results import data, error
from tests.servers import valkey
from tests.test_consent import DEFAULT, User

PLANTED = "PLANTED-by-a-store-writer"
Env = tuple[dict[str, str], FakeClock]  # the server's environment, and its clock
WORKSPACE = catalog.MARKETING_WORKSPACE
VOICE, OTHER_VOICE = catalog.BRAND_VOICES[0], catalog.BRAND_VOICES[1]
GENERATE = {"model": "gpt-4.1-mini", "prompt": "A tagline.", "max_tokens": 50, "workspace_id": WORKSPACE}
FAR = 4_000_000_000.0  # a time no lease, failure or verdict of the server's own reaches


@dataclass(frozen=True)
class Keys:
    neuroflash: layout.AccountKeys
    neuralsnap: layout.AccountKeys
    routes: layout.RouteKeys


def keys_of(emulator: Emulator) -> Keys:
    settings = Settings.from_env(emulator.environment())
    assert settings.neuroflash_client_id is not None
    assert settings.neuralsnap_api_key is not None
    flash = account_key(settings, "neuroflash", settings.neuroflash_token_url, settings.neuroflash_client_id)
    snap = account_key(
        settings, "neuralsnap", settings.neuralsnap_api_url, settings.neuralsnap_api_key.get_secret_value()
    )
    routes = layout.routes_key("neuroflash", settings.neuroflash_api_url, sandbox=settings.sandbox)
    return Keys(layout.AccountKeys(flash), layout.AccountKeys(snap), layout.RouteKeys(routes))


def quota_doc(now: float) -> Doc:
    """A quota book that says the text quota is spent and fair use reached: every generate would be refused."""
    spent = {"usageTypeKey": "tokens", "limitAmount": 2000, "usedAmount": 2000, "availableAmount": 0,
             "limitAmountDaily": 100, "usedAmountDaily": 100, "fairUseLimitReached": True}  # fmt: skip
    return {"seen_at": now, "quotas": [spent]}


async def generates(client: Client, state: EmulatorState, env: Env) -> None:
    data(await client.call_tool("generate", GENERATE))
    assert state.count("chat") == 1
    assert state.unrouted.total() == 0  # no request to a path the server did not find itself


async def generates_in_voice(client: Client, state: EmulatorState, env: Env) -> None:
    data(await client.call_tool("generate", {**GENERATE, "brand_voice_id": VOICE["id"]}))
    (chat,) = sent(state, "chat")
    assert chat["messages"][0] == {"role": "system", "content": catalog.voice_prompt(VOICE)}
    assert state.count("voice_prompt") == 1  # the server fetched the real prompt
    assert state.unrouted.total() == 0  # from a route it found itself


async def reads_quota(client: Client, state: EmulatorState, env: Env) -> None:
    data(await client.call_tool("check_quota", {"workspace_id": WORKSPACE}))
    assert state.count("token") == 1  # its own token, fetched once


async def refuses_an_unknown_model(client: Client, state: EmulatorState, env: Env) -> None:
    # "The model list's route is missing" would leave the model to the upstream: a chat request sent for nothing.
    assert (
        error(await client.call_tool("generate", {**GENERATE, "model": "no-such-model"}))["code"]
        == "model_not_available"
    )
    assert state.count("chat") == 0


async def completes_workspaces(client: Client, state: EmulatorState, env: Env) -> None:
    asked = PromptReference(type="ref/prompt", name="write_in_brand_voice")
    completed = (await client.complete(asked, {"name": "workspace_id", "value": ""})).completion
    assert WORKSPACE in completed.values
    assert all(PLANTED not in value for value in completed.values)


async def lists_real_snapshots(client: Client, state: EmulatorState, env: Env) -> None:
    kept = new_snapshot({"name": "Real", "core": "Saved."}, state.api_keys[catalog.DEMO_API_KEY], state.clock.now())
    state.add_snapshot(kept)
    listed = [(r.uri, r.name) for r in (await client.list_resources()).resources]
    assert (f"neuralsnap://snapshots/{kept['id']}", "Real") in listed
    assert all(PLANTED not in f"{uri} {name}" for uri, name in listed)


async def shows_no_plan(client: Client, state: EmulatorState, env: Env) -> None:
    data(await client.call_tool("search_snapshots", {"query": "notes"}))
    environ, clock = env
    store = await open_state(Settings.from_env(environ), clock)
    try:
        view = await gather(store, clock)  # what `flashsnap-mcp status` shows, with the credentials
    finally:
        await store.aclose()
    (neuralsnap,) = [a for a in view["accounts"] if a["service"] == "neuralsnap"]
    assert "plan" not in neuralsnap


Act = Callable[[Client, EmulatorState, Env], Awaitable[None]]
# (what is planted, its key, the document, what the user then does and what it must get)
PLANTS: list[tuple[str, Callable[[Keys], str], Callable[[float], Doc], Act]] = [
    ("a token", lambda k: k.neuroflash.token,
     lambda now: {"token": {"value": PLANTED, "expires_at": now + 3000, "lifetime": 3600.0}}, reads_quota),
    ("a token failure", lambda k: k.neuroflash.token,
     lambda now: {"failure": {"kind": "rejected", "message": PLANTED, "hint": PLANTED, "status": 401, "until": FAR}},
     reads_quota),
    ("a token fetch lease", lambda k: k.neuroflash.token,
     lambda now: {"lease": {"owner": PLANTED, "until": FAR}}, reads_quota),
    ("a quota verdict", lambda k: f"{k.neuroflash.quota}:{WORKSPACE}", quota_doc, generates),
    ("a brand voice's prompt", lambda k: k.neuroflash.voice(WORKSPACE, VOICE["id"]),
     lambda now: {"text": PLANTED, "seen_at": now}, generates_in_voice),
    ("a learned chat route", lambda k: k.routes.chat, lambda now: {"path": "/planted", "seen_at": now}, generates),
    ("a missing model list", lambda k: k.routes.models, lambda now: {"missing": True, "seen_at": now},
     refuses_an_unknown_model),
    ("a learned brand-voice route", lambda k: k.routes.voice, lambda now: {"path": "/summaries", "seen_at": now},
     generates_in_voice),
    ("a snapshot listing", lambda k: k.neuralsnap.listing("snapshots"),
     lambda now: {"values": [[PLANTED, PLANTED]], "gen": 0}, lists_real_snapshots),
    ("a workspace listing", lambda k: k.neuroflash.listing("workspaces"),
     lambda now: {"values": [[PLANTED, PLANTED]]}, completes_workspaces),
    ("NeuralSnap's plan", lambda k: k.neuralsnap.profile,
     lambda now: {"seen_at": now, "profile": {"plan": PLANTED, "limits": {"api_rate": 1}}}, shows_no_plan),
]  # fmt: skip


@pytest.fixture(params=["sqlite", "valkey"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment that puts the server on each shared store (SQLite: the test's state directory)."""
    if request.param == "sqlite":
        yield {}
        return
    with valkey(tmp_path) as server:
        yield {"FLASHSNAP_REDIS_URL": server.url}


@asynccontextmanager
async def writer(backend: dict[str, str], state_dir: Path, clock: FakeClock) -> AsyncIterator[Store]:
    """The store as a writer without the secret reaches it: the same file, or the same Redis keyspace."""
    raw: Store
    if "FLASHSNAP_REDIS_URL" in backend:
        raw = RedisStore(backend["FLASHSNAP_REDIS_URL"], prefix="flashsnap:")
    else:
        raw = SQLiteStore(state_dir / FILENAME, clock)
    try:
        yield raw
    finally:
        await raw.aclose()


async def plant(store: Store, key: str, doc: Doc) -> None:
    await store.update(key, lambda _: Change(None, doc, 3600.0))


@pytest.mark.parametrize(("kind", "key", "doc", "act"), PLANTS, ids=[p[0] for p in PLANTS])
async def test_a_planted_document_commands_nothing(
    connect: Connect, emulator: Emulator, state: EmulatorState, clock: FakeClock, state_dir: Path,
    backend: dict[str, str], caplog: pytest.LogCaptureFixture,
    kind: str, key: Callable[[Keys], str], doc: Callable[[float], Doc], act: Act,
) -> None:  # fmt: skip
    planted_at = key(keys_of(emulator))
    async with writer(backend, state_dir, clock) as raw:
        await plant(raw, planted_at, doc(clock.now()))
    with anyio.fail_after(30), caplog.at_level(logging.WARNING):
        async with connect(env=backend, toolsets=("all",)) as client:
            await act(client, state, ({**emulator.environment(), **backend}, clock))
    assert state.presented <= set(state.issued)  # the upstream saw only tokens it issued
    assert state.count_status("chat", 401) == state.count_status("quotas", 401) == 0
    warned = [r.getMessage() for r in caplog.records if planted_at in r.getMessage()]
    # Said once per store opened (the status view opens its own) that it was not ours, never what it held.
    assert len(warned) == (2 if act is shows_no_plan else 1), warned
    assert all(PLANTED not in r.getMessage() for r in caplog.records)


async def test_a_sealed_document_moved_to_another_key_does_not_open(
    connect: Connect, emulator: Emulator, state: EmulatorState, clock: FakeClock, state_dir: Path,
    backend: dict[str, str],
) -> None:  # fmt: skip
    """A writer cannot seal, but it can copy what the server sealed: one voice's prompt put under another's key."""
    keys = keys_of(emulator).neuroflash
    with anyio.fail_after(30):
        async with connect(env=backend) as client:
            data(await client.call_tool("generate", {**GENERATE, "brand_voice_id": VOICE["id"]}))
            async with writer(backend, state_dir, clock) as raw:
                sealed = await raw.get(keys.voice(WORKSPACE, VOICE["id"]))
                assert sealed is not None
                assert catalog.voice_prompt(VOICE) not in str(sealed)  # what the store holds says nothing
                await plant(raw, keys.voice(WORKSPACE, OTHER_VOICE["id"]), sealed)
            data(await client.call_tool("generate", {**GENERATE, "brand_voice_id": OTHER_VOICE["id"]}))
    first, second = sent(state, "chat")
    assert first["messages"][0]["content"] == catalog.voice_prompt(VOICE)
    assert second["messages"][0]["content"] == catalog.voice_prompt(OTHER_VOICE)
    assert state.count("voice_prompt") == 2


async def test_the_token_in_the_store_is_unreadable_without_the_secret(
    connect: Connect, emulator: Emulator, state: EmulatorState, clock: FakeClock, state_dir: Path,
    backend: dict[str, str],
) -> None:  # fmt: skip
    with anyio.fail_after(30):
        async with connect(env=backend) as client:
            data(await client.call_tool("check_quota", {"workspace_id": WORKSPACE}))
            async with writer(backend, state_dir, clock) as raw:
                stored = await raw.get(keys_of(emulator).neuroflash.token)
    (token,) = state.issued
    assert stored is not None
    assert token not in str(stored)
    assert set(stored) == {"sealed"}


# --- what the token document claims is believed only within its normal lifetime ------------------------------

BOUNDS = [
    ("lease", {"owner": "x"}, lease.LEASE_S),
    ("failure", {"kind": "rejected", "message": "m"}, lease.FAILURE_MEMORY_S),
    ("token", {"value": "t", "lifetime": 3600.0}, 3600.0),
    ("token", {"value": "t", "lifetime": lease.MAX_LIFETIME_S}, lease.MAX_LIFETIME_S),
]


@pytest.mark.parametrize(("part", "fields", "lifetime"), BOUNDS, ids=[f"{b[0]}-{b[2]:.0f}s" for b in BOUNDS])
@pytest.mark.parametrize("beyond", [0.0, lease.CLOCK_SKEW_S, lease.CLOCK_SKEW_S + 0.001, 86_400.0, FAR])
def test_a_part_that_claims_more_than_its_lifetime_reads_as_absent(
    part: str, fields: dict[str, Any], lifetime: float, beyond: float
) -> None:
    now = 1_000_000.0
    ends = "expires_at" if part == "token" else "until"
    doc = {part: {**fields, ends: now + lifetime + beyond}}
    assert (part in lease.live_parts(doc, now)) == (beyond <= lease.CLOCK_SKEW_S)


def test_a_token_of_an_impossible_lifetime_reads_as_absent() -> None:
    for lifetime in (0.0, -1.0, lease.MAX_LIFETIME_S + 1):
        doc = {"token": {"value": "t", "lifetime": lifetime, "expires_at": 1.0}}
        assert lease.live_parts(doc, 0.5) == {}


# --- what a deletion can still do, bounded ----------------------------------------------------------------------

ASKED = {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 4000}  # 3,001 words: asked by default


@pytest.mark.parametrize(("after_s", "spent"), [(0.0, 2), (ANSWER_TTL_S - 1, 2), (ANSWER_TTL_S, 1), (86_400.0, 1)])
async def test_a_deleted_consent_mark_lets_a_yes_be_replayed_only_until_its_questions_deadline(
    connect: Connect, emulator: Emulator, state: EmulatorState, clock: FakeClock, state_dir: Path,
    backend: dict[str, str], after_s: float, spent: int,
) -> None:  # fmt: skip
    """A writer cannot plant a used mark, but it can delete one: the same sealed yes, with the same arguments,
    then counts again, until the deadline the question's own sealed state carries, never after."""
    yes: InputResponses = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
    with anyio.fail_after(30):
        async with connect(env={**backend, **DEFAULT}, elicitation=User()) as client:
            first = await client.session.call_tool("generate", ASKED, allow_input_required=True)
            assert isinstance(first, InputRequiredResult)
            sealed = first.request_state
            answered = await client.session.call_tool(
                "generate", ASKED, allow_input_required=True, input_responses=yes, request_state=sealed
            )
            assert isinstance(answered, CallToolResult)
            data(answered)
            async with writer(backend, state_dir, clock) as raw:
                marks = await raw.keys("consent:")
                assert len(marks) == 1
                await raw.update(marks[0], lambda _: Change(None, None))
            clock.advance(after_s)
            replayed = await client.session.call_tool(
                "generate", ASKED, allow_input_required=True, input_responses=yes, request_state=sealed
            )
    assert state.count("chat") == spent
    assert isinstance(replayed, CallToolResult if spent == 2 else InputRequiredResult)
