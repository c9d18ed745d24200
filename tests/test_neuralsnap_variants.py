"""NeuralSnap as each of the vendor's disagreeing pages describes it, through the MCP client against the emulator
in that variant: every snapshot shape read, a Starter key's 403 and a spent monthly quota said in one request,
the nested error form understood, and every X-RateLimit-* oddity bounded before it can lock anything."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from server.cli.status import gather, render
from server.clock import FakeClock
from server.config import Settings
from server.httpio import MAX_WINDOW_S
from server.neuralsnap.wire import SnapshotFields, read_saved
from server.runtime import open_state
from server.sandbox import Emulator, EmulatorState
from server.sandbox.records import Fault
from server.sandbox.variants import HeaderOddity, Variants
from server.state import accounts, layout
from server.state.store import Change, Doc
from tests.conftest import Connect, serve
from tests.results import data, error

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
THOUGHT = {
    "name": "Ship small",
    "core": "Small pull requests get reviewed faster.",
    "emotion": [{"name": "relief", "value": 0.8}, {"name": "doubt", "value": "some"}],
    "steps": "Cut the change in two.\nShip the first half.",
    "tags": ["engineering"],
}
# FakeClock starts at 2026-05-28T20:26:40Z: the next billing cycle starts with June.
NEXT_CYCLE = "2026-06-01T00:00:00+00:00"


@pytest.mark.parametrize("shape", ["api", "concepts"])
async def test_snapshot_search_and_get_read_either_pages_snapshot_shape(
    client: Client, state: EmulatorState, shape: str
) -> None:
    serve(state, snapshot_shape=shape)
    if shape == "concepts":
        emotion: object = "relief: 0.8, doubt: some"
        steps: object = ["Cut the change in two.", "Ship the first half."]
    else:
        emotion, steps = {"relief": 0.8, "doubt": "some"}, THOUGHT["steps"]

    saved = data(await client.call_tool("snapshot", THOUGHT))
    assert saved["id"]
    assert saved["note"] is None
    assert (saved["emotion"], saved["steps"]) == (emotion, steps)

    found = data(await client.call_tool("search_snapshots", {"query": "small pull requests"}))
    hit = found["snapshots"][0]
    assert hit["id"] == saved["id"]
    assert (hit["emotion"], hit["steps"]) == (emotion, steps)
    assert isinstance(hit["similarity"], float)
    assert 0 < hit["similarity"] <= 1

    fetched = data(await client.call_tool("get_snapshot", {"id": saved["id"]}))
    assert {k: v for k, v in saved.items() if k != "note"} == fetched
    assert [state.count(r) for r in ("snapshot_create", "snapshot_search", "snapshot_get")] == [1, 1, 1]


async def test_a_save_answered_in_a_shape_nobody_documents_is_reported_saved(
    client: Client, state: EmulatorState
) -> None:
    state.inject("snapshot_create", Fault(body="malformed"))  # a 2xx whose body cannot be read
    result = await client.call_tool("snapshot", {"name": "Keep it", "core": "c"})
    saved = data(result)  # not an error, never "maybe not processed"
    assert saved["id"] is None
    assert saved["name"] == "Keep it"
    assert "saved" in saved["note"]
    assert "Do not save it again" in saved["note"]
    assert state.count("snapshot_create") == 1


def test_a_saved_snapshot_keeps_every_field_it_can_read() -> None:
    sent = SnapshotFields(name="n", core="c", confidence=0.9)
    answer = b'{"data": {"id": "s-1", "name": "n", "core": "c", "confidence": "very", "tags": "x", "extra": 1}}'
    saved = read_saved(answer, sent)
    assert saved.id == "s-1"
    assert saved.confidence == 0.9  # as sent: the answer's "very" is no number
    assert saved.note is not None
    assert "confidence, tags" in saved.note
    bare = read_saved(b'{"id": "s-2", "name": "n", "core": "c"}', sent)  # no envelope: still read in full
    assert (bare.id, bare.note) == ("s-2", None)


@pytest.mark.parametrize("nested", [False, True])
async def test_a_starter_key_is_told_its_plan_has_no_api_access_after_one_request(
    client: Client, state: EmulatorState, clock: FakeClock, nested: bool
) -> None:
    serve(state, plan="starter", nested_errors=nested)
    calls = [
        ("snapshot", {"name": "n", "core": "c"}, "snapshot_create"),
        ("search_snapshots", {"query": "x"}, "snapshot_search"),
        ("get_snapshot", {"id": UNKNOWN_ID}, "snapshot_get"),
    ]
    for tool, args, route in calls:
        err = error(await client.call_tool(tool, args))
        assert err["code"] == "permission_denied"
        assert "insufficient permissions" in err["message"]  # the upstream's words, quoted
        assert "plan" in err["message"]
        assert "API access" in err["hint"]
        assert "NEURALSNAP_API_KEY" in err["hint"]
        assert state.count(route) == 1  # one request, never retried
    assert sum(state.requests.values()) == 3
    assert clock.sleeps == []


@pytest.mark.parametrize("nested", [False, True])
async def test_a_spent_monthly_search_quota_is_one_request_and_says_when_it_renews(
    client: Client, state: EmulatorState, clock: FakeClock, nested: bool
) -> None:
    serve(state, monthly_spent=frozenset({"search"}), nested_errors=nested)
    with anyio.fail_after(5):  # the real clock: nothing waits for the quota
        err = error(await client.call_tool("search_snapshots", {"query": "x", "max_wait_s": 600}))
    assert err["code"] == "quota_exhausted"
    assert err["quota"] == "search"
    assert err["period"] == "monthly"
    assert err["resets_at"] == NEXT_CYCLE
    assert NEXT_CYCLE in err["message"]
    assert "search quota" in err["message"]
    assert state.count("snapshot_search") == 1
    assert clock.sleeps == []  # and not on the fake clock either
    # The quota is search's alone: the key's gate holds nothing back, and a second search is one request too.
    data(await client.call_tool("snapshot", {"name": "n", "core": "c"}))
    assert error(await client.call_tool("search_snapshots", {"query": "y"}))["code"] == "quota_exhausted"
    assert state.count("snapshot_search") == 2
    assert state.count("snapshot_create") == 1
    assert clock.sleeps == []


async def test_nested_errors_are_read_like_the_flat_ones(connect: Connect, state: EmulatorState) -> None:
    serve(state, nested_errors=True)
    async with connect() as client:
        missing = error(await client.call_tool("get_snapshot", {"id": UNKNOWN_ID}))
    async with connect(env={"NEURALSNAP_API_KEY": "ns_live_revoked"}) as client:
        rejected = error(await client.call_tool("search_snapshots", {"query": "x"}))
    assert missing["code"] == "not_found"
    assert UNKNOWN_ID in missing["message"]
    assert rejected["code"] == "credentials_rejected"
    # A rate-limit 429 in the nested form is still waited out: two servers with their own budgets.
    state.set_rate_limit(1, 60.0)
    for _ in range(2):
        async with connect(env={"FLASHSNAP_STATE": "memory"}) as client:
            data(await client.call_tool("search_snapshots", {"query": "x", "max_wait_s": 120}))
    assert state.count_status("snapshot_search", 429) == 1
    assert state.count_status("snapshot_search", 200) == 2


ODDITIES: list[HeaderOddity] = [
    "reset_ms", "reset_relative", "reset_past", "reset_far", "remaining_above_limit", "remaining_negative",
    "limit_zero",
]  # fmt: skip


async def gate_doc(settings: Settings, clock: FakeClock) -> tuple[str, Doc | None, str]:
    """The NeuralSnap gate's stored document, its key, and the status view rendered from the same store."""
    store = await open_state(settings, clock)
    try:
        account = next(a for a in await accounts.listed(store) if a.service == "neuralsnap")
        key = layout.AccountKeys(account.key).gate
        return key, await store.get(key), render(await gather(store, clock))
    finally:
        await store.aclose()


@pytest.mark.parametrize("oddity", ODDITIES)
async def test_odd_rate_limit_headers_never_lock_neuralsnap_and_status_shows_them(
    emulator: Emulator, state: EmulatorState, connect: Connect, clock: FakeClock, oddity: HeaderOddity
) -> None:
    serve(state, header_oddities=frozenset({oddity}))
    state.set_rate_limit(2, 60.0)
    async with connect() as client:
        for i in range(3):  # the third finds the window spent: it waits for the real reset, not for years
            data(await client.call_tool("search_snapshots", {"query": f"q{i}", "max_wait_s": 120}))
    assert state.count("snapshot_search") - state.count_status("snapshot_search", 429) == 3
    assert state.count_status("snapshot_search", 429) <= 1  # only where the headers hide the budget
    assert all(s <= 60 for s in clock.sleeps)
    _, doc, view = await gate_doc(Settings.from_env(emulator.environment()), clock)
    assert doc is not None
    assert doc["reset_at"] is None or doc["reset_at"] <= clock.now() + MAX_WINDOW_S
    assert doc["limit"] in (None, 2)
    assert 0 <= (doc["remaining"] or 0) <= 2
    assert "neuralsnap" in view
    assert "implausible" not in view


async def test_a_reset_in_milliseconds_does_not_lock_neuralsnap(
    state: EmulatorState, connect: Connect, clock: FakeClock
) -> None:
    serve(state, header_oddities=frozenset({"reset_ms"}))
    state.set_rate_limit(2, 60.0)
    async with connect() as client:
        for i in range(5):
            data(await client.call_tool("search_snapshots", {"query": f"q{i}", "max_wait_s": 120}))
    assert state.count("snapshot_search") == 5
    assert state.count_status("snapshot_search", 429) == 0
    assert sum(clock.sleeps) <= 120  # two windows' turns, not 1794170369266 s


async def test_a_stored_lockout_from_a_broken_header_is_ignored_and_status_shows_it_marked(
    emulator: Emulator, state: EmulatorState, connect: Connect, clock: FakeClock
) -> None:
    settings = Settings.from_env(emulator.environment())
    async with connect() as client:
        data(await client.call_tool("search_snapshots", {"query": "x"}))
    key, doc, _ = await gate_doc(settings, clock)
    # What an older server stored from `X-RateLimit-Reset: 1794170369266`, and a penalty of days.
    store = await open_state(settings, clock)
    broken = {**(doc or {}), "limit": 0, "remaining": 0, "reset_at": 1_794_170_369_266, "blocked_until": 4e9}
    await store.update(key, lambda _: Change(None, broken))
    view = render(await gather(store, clock))
    await store.aclose()
    assert "1794170369266 (implausible" in view  # shown, marked, and no "year 58881 is out of range"
    assert "more than a day ahead" in view  # the penalty
    async with connect() as client:  # a restarted server is not locked by it
        with anyio.fail_after(5):
            data(await client.call_tool("search_snapshots", {"query": "x"}))
    assert state.count("snapshot_search") == 2
    assert clock.sleeps == []


def test_every_variant_named_in_the_profiles_is_served() -> None:
    assert Variants.profile("starter-plan").plan == "starter"
    assert Variants.profile("search-quota-spent", "nested-errors").nested_errors
