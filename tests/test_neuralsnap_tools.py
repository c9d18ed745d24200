"""NeuralSnap's tools beyond saving and searching, through a real MCP client against the emulator: crystallize,
paging, updating and deleting snapshots, choosing the brain, and a search result cut to fit the client."""

from __future__ import annotations

import pytest
from mcp import Client

from server.sandbox import EmulatorState, catalog
from server.sandbox.records import Fault
from tests.conftest import Connect, serve
from tests.results import data, error

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


# --- crystallize ---------------------------------------------------------------------------------------------


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


# --- list, update, delete ------------------------------------------------------------------------------------


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


# --- brains --------------------------------------------------------------------------------------------------


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


# --- results that fit the client -----------------------------------------------------------------------------


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
