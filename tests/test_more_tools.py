"""The tools of issue 19 through a real MCP client against the emulator: brand voices, digital twins, crystallize,
paging, updating and deleting snapshots, brains, and results cut to fit the client."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from mcp import Client

from server.sandbox import EmulatorState, catalog
from server.sandbox.records import Fault
from tests.conftest import MODES, Connect
from tests.results import data, error

ALL_TOOLSETS = {"FLASHSNAP_TOOLSETS": "all"}
VOICE = catalog.BRAND_VOICES[0]
THOUGHT = {
    "name": "Ship small",
    "core": "Small pull requests get reviewed faster.",
    "emotion": [{"name": "relief", "value": 0.8}],
    "steps": "Cut the change in two.\nShip the first half.",
    "tags": ["engineering"],
    "story": "A three-week branch that never merged.",
    "confidence": 0.9,
}
LONG_TEXT = (
    "Small pull requests get reviewed faster and break less.\n\n"
    "Writing the test first makes the design honest.\n\n"
    "A deploy on Friday needs someone on call on Saturday."
)


def serve(state: EmulatorState, **variants: Any) -> None:
    state.variants = dataclasses.replace(state.variants, **variants)


@pytest.fixture(params=MODES)
async def every(request: pytest.FixtureRequest, connect: Connect) -> Any:
    """A client offered every toolset, in both protocol modes."""
    async with connect(mode=request.param, env=ALL_TOOLSETS) as client:
        yield client


def sent(state: EmulatorState, route: str) -> list[Any]:
    return [body for name, body in state.received if name == route]


# --- neuroflash: brand voices --------------------------------------------------------------------------------


async def test_list_brand_voices_reads_the_hal_list(client: Client, state: EmulatorState) -> None:
    result = data(await client.call_tool("list_brand_voices", {}))  # in the default toolset
    assert result["workspace_id"] == catalog.MARKETING_WORKSPACE
    assert [v["id"] for v in result["brand_voices"]] == [v["id"] for v in catalog.BRAND_VOICES]
    assert result["truncated"] is False
    assert state.count("chat") == 0


@pytest.mark.parametrize("route", ["ds-prompt", "summaries", "both"])
async def test_generate_with_a_brand_voice_sends_its_prompt_first_whichever_route_answers(
    connect: Connect, state: EmulatorState, route: str
) -> None:
    serve(state, voice_prompt=route)
    args = {"model": "gpt-4.1-mini", "prompt": "A tagline.", "system": "Be brief.", "brand_voice_id": VOICE["id"]}
    async with connect() as client:
        data(await client.call_tool("generate", args))
        data(await client.call_tool("generate", {**args, "prompt": "Another."}))
    first, second = sent(state, "chat")
    assert first["messages"][0] == {"role": "system", "content": catalog.voice_prompt(VOICE)}
    assert first["messages"][1:] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "A tagline."},
    ]
    assert second["messages"][0] == first["messages"][0]
    # Fetched once per voice: the second generate took the prompt from the shared store.
    assert state.count("voice_prompt") == 1
    # The summaries-only API: ds-prompt answered the gateway's 404 (and its confirming probe), then the other route.
    assert state.unrouted.total() == (2 if route == "summaries" else 0)


async def test_an_unknown_brand_voice_says_where_to_look_and_generates_nothing(
    client: Client, state: EmulatorState
) -> None:
    args = {"model": "gpt-4.1-mini", "prompt": "Hi", "brand_voice_id": "bv-nope"}
    refused = error(await client.call_tool("generate", args))
    assert refused["code"] == "not_found"
    assert "bv-nope" in refused["message"]
    assert "list_brand_voices" in refused["hint"]
    assert state.count("chat") == 0


# --- neuroflash: digital twins -------------------------------------------------------------------------------


async def test_list_twins_shows_the_groups_in_one_request_then_a_groups_twins(
    every: Client, state: EmulatorState
) -> None:
    groups = data(await every.call_tool("list_twins", {}))
    assert [g["key"] for g in groups["groups"]] == [g["key"] for g in catalog.TWIN_GROUPS]
    assert state.count("twin_groups") == 1
    twins = data(await every.call_tool("list_twins", {"group": "gen-z-de"}))
    assert [t["id"] for t in twins["twins"]] == ["tw-lena-21", "tw-jonas-24"]
    missing = error(await every.call_tool("list_twins", {"group": "martians"}))
    assert missing["code"] == "not_found"


async def test_ask_twins_returns_the_summary_and_each_answer_and_is_sent_once(
    every: Client, state: EmulatorState
) -> None:
    args = {"twin_ids": ["tw-lena-21", "tw-petra-52"], "question": "Would you click 'Ship small, ship often'?"}
    result = data(await every.call_tool("ask_twins", args))
    assert result["summary"].startswith("2 twins answered")
    assert {a["twin_id"] for a in result["answers"]} == {"tw-lena-21", "tw-petra-52"}
    assert all(a["answer"] and a["reason"] for a in result["answers"])
    assert sent(state, "twin_group_chat")[0]["twinIds"] == args["twin_ids"]
    # A 502 after it may have run is never sent again.
    state.inject("twin_group_chat", Fault(status=502))
    failed = error(await every.call_tool("ask_twins", args))
    assert failed["maybe_processed"] is True
    assert state.count("twin_group_chat") == 2
    too_many = error(await every.call_tool("ask_twins", {"twin_ids": [f"t{i}" for i in range(21)], "question": "?"}))
    assert too_many["code"] == "invalid_arguments"
    assert state.count("twin_group_chat") == 2


# --- NeuralSnap: crystallize, list, update, delete, brains ---------------------------------------------------


async def test_crystallize_makes_snapshots_reports_tokens_and_is_never_repeated(
    every: Client, state: EmulatorState
) -> None:
    result = data(await every.call_tool("crystallize", {"text": LONG_TEXT, "source_type": "conversation"}))
    assert result["count"] == 3 == len(result["snapshots"])
    assert result["tokens"] == state.crystallize_tokens > 0
    assert all(s["source_type"] == "conversation" for s in result["snapshots"])
    state.inject("crystallize", Fault(status=503))
    failed = error(await every.call_tool("crystallize", {"text": LONG_TEXT}))
    assert failed["maybe_processed"] is True
    assert state.count("crystallize") == 2
    short = error(await every.call_tool("crystallize", {"text": "too short"}))
    assert short["code"] == "invalid_arguments"
    assert state.count("crystallize") == 2


async def test_crystallize_with_a_spent_monthly_quota_says_when_it_renews(every: Client, state: EmulatorState) -> None:
    serve(state, monthly_spent=frozenset({"crystallize"}))
    refused = error(await every.call_tool("crystallize", {"text": LONG_TEXT}))
    assert refused["code"] == "quota_exhausted"
    assert "crystallize" in refused["message"]
    assert refused["resets_at"].startswith("2026-06-01T00:00:00")
    assert state.count("crystallize") == 1


async def test_list_snapshots_pages_newest_first(every: Client, state: EmulatorState) -> None:
    for n in range(3):
        data(await every.call_tool("snapshot", {"name": f"Thought {n}", "core": f"Core {n}"}))
        state.clock.advance(1)  # type: ignore[attr-defined]
    first = data(await every.call_tool("list_snapshots", {"limit": 2}))
    assert [s["name"] for s in first["snapshots"]] == ["Thought 2", "Thought 1"]
    assert (first["total"], first["next_offset"], first["truncated"]) == (3, 2, False)
    rest = data(await every.call_tool("list_snapshots", {"limit": 2, "offset": first["next_offset"]}))
    assert [s["name"] for s in rest["snapshots"]] == ["Thought 0"]
    assert rest["next_offset"] is None


@pytest.mark.parametrize("verb", ["patch", "put", "both"])
async def test_update_snapshot_keeps_every_field_it_was_not_given_under_either_verb(
    every: Client, state: EmulatorState, verb: str
) -> None:
    serve(state, snapshot_update=verb)
    saved = data(await every.call_tool("snapshot", THOUGHT))
    changed = data(await every.call_tool("update_snapshot", {"id": saved["id"], "core": "Small PRs merge sooner."}))
    assert changed["core"] == "Small PRs merge sooner."
    for kept in ("name", "story", "steps", "tags", "confidence", "emotion"):
        assert changed[kept] == saved[kept], kept
    stored = data(await every.call_tool("get_snapshot", {"id": saved["id"]}))
    assert stored == {**{k: v for k, v in saved.items() if k != "note"}, "core": changed["core"],
                      "updated_at": stored["updated_at"]}  # fmt: skip
    asked = [name for name, _ in state.received if name.startswith("snapshot_p")]
    # PATCH where it exists; else one PATCH answered 405, then the whole snapshot PUT.
    assert asked == {"patch": ["snapshot_patch"], "both": ["snapshot_patch"], "put": ["snapshot_put"]}[verb]


async def test_update_and_delete_of_an_unknown_snapshot_say_not_found(every: Client) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert error(await every.call_tool("update_snapshot", {"id": unknown, "name": "x"}))["code"] == "not_found"
    assert error(await every.call_tool("delete_snapshot", {"id": unknown, "confirm": True}))["code"] == "not_found"
    assert error(await every.call_tool("update_snapshot", {"id": unknown}))["code"] == "invalid_arguments"


async def test_delete_snapshot_removes_it(every: Client, state: EmulatorState) -> None:
    saved = data(await every.call_tool("snapshot", THOUGHT))
    deleted = data(await every.call_tool("delete_snapshot", {"id": saved["id"], "confirm": True}))
    assert deleted == {"id": saved["id"], "deleted": True}
    assert saved["id"] not in state.snapshots
    assert error(await every.call_tool("get_snapshot", {"id": saved["id"]}))["code"] == "not_found"


async def test_brain_id_chooses_the_brain_to_save_search_and_crystallize_in(
    every: Client, state: EmulatorState
) -> None:
    other = {"brain_id": catalog.SECOND_BRAIN}
    data(await every.call_tool("snapshot", {**THOUGHT, **other}))
    data(await every.call_tool("crystallize", {"text": LONG_TEXT, **other}))
    assert {s["brain_id"] for s in state.snapshots.values()} == {catalog.SECOND_BRAIN}
    assert data(await every.call_tool("search_snapshots", {"query": "small pull requests"}))["count"] == 0
    found = data(await every.call_tool("search_snapshots", {"query": "small pull requests", **other}))
    assert found["count"] == 2
    unknown = {"brain_id": "11111111-2222-4333-8444-555555555555"}
    assert error(await every.call_tool("search_snapshots", {"query": "x", **unknown}))["code"] == "not_found"


# --- results that fit ----------------------------------------------------------------------------------------


async def test_a_search_too_big_for_the_client_is_cut_with_the_ids_to_read_the_rest(
    connect: Connect, state: EmulatorState
) -> None:
    async with connect(env={"FLASHSNAP_MAX_RESULT_TOKENS": "2000"}) as client:
        for n in range(12):
            data(await client.call_tool("snapshot", {**THOUGHT, "name": f"Ship small {n}", "story": "x" * 600}))
        result = await client.call_tool("search_snapshots", {"query": "ship small", "limit": 50})
    found = data(result)
    received = len(result.content[0].text.encode()) + len(str(result.structured_content).encode())  # type: ignore[union-attr]
    assert found["truncated"] is True
    assert found["count"] == 12
    assert 0 < len(found["snapshots"]) < 12
    assert len(found["snapshots"]) + len(found["cut_ids"]) == 12
    assert received <= 2000 * 4 + 500  # the budget, as the client counts it (repr is close to JSON)
