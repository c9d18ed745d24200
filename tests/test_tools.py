"""Every tool's happy path through a real MCP client, in the modern and the legacy protocol."""

from __future__ import annotations

import pytest
from mcp import Client

from server.sandbox import EmulatorState, catalog
from tests.conftest import Connect
from tests.results import data
from tests.test_tool_selection import ALL, EVERY

TOOLS = ALL  # the default toolsets' tools, from the one list of tools


async def test_the_default_toolsets_offer_todays_tools_and_brand_voices(client: Client) -> None:
    assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_tool_is_listed_with_schemas_and_annotations(connect: Connect, mode: str) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "all"}) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == EVERY
    for tool in tools.values():
        assert len(tool.description or "") > 40
        assert tool.output_schema is not None, tool.name
        assert tool.annotations is not None
        assert tool.annotations.open_world_hint is True
        destructive = tool.name in ("update_snapshot", "delete_snapshot")
        assert tool.annotations.destructive_hint is destructive, tool.name
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description") or "$ref" in prop, f"{tool.name}.{name} has no description"
    for read_only in ("list_workspaces", "check_quota", "list_models", "search_snapshots", "get_snapshot",
                      "list_brand_voices", "list_twins", "list_snapshots"):  # fmt: skip
        assert tools[read_only].annotations.read_only_hint is True  # type: ignore[union-attr]
        assert tools[read_only].annotations.idempotent_hint is True  # type: ignore[union-attr]
    for spends in ("generate", "snapshot", "ask_twins", "crystallize", "delete_snapshot"):
        assert tools[spends].annotations.read_only_hint is False  # type: ignore[union-attr]
        assert tools[spends].annotations.idempotent_hint is False  # type: ignore[union-attr]
    assert tools["update_snapshot"].annotations.idempotent_hint is True  # type: ignore[union-attr]


async def test_the_session_speaks_the_protocol_asked_for(client: Client, request: pytest.FixtureRequest) -> None:
    expected = {"auto": "2026-07-28", "legacy": "2025-11-25"}[request.node.callspec.params["client"]]
    assert client.protocol_version == expected


async def test_list_workspaces_marks_the_only_workspace_as_default(client: Client) -> None:
    result = data(await client.call_tool("list_workspaces", {}))
    assert result == {
        "workspaces": [{"id": catalog.MARKETING_WORKSPACE, "name": "Marketing Team", "is_default": True}],
        "default_workspace_id": catalog.MARKETING_WORKSPACE,
    }


async def test_check_quota_reports_both_periods_and_a_verdict(client: Client, state: EmulatorState) -> None:
    state.set_quota(catalog.MARKETING_WORKSPACE, used=1_500, used_daily=500)
    result = data(await client.call_tool("check_quota", {}))
    assert result["workspace_id"] == catalog.MARKETING_WORKSPACE
    assert result["can_generate"] is True
    assert result["reason"] is None
    text = next(q for q in result["quotas"] if q["usage_type"] == "tokens")
    assert text["monthly"] == {
        "limit": 200_000,
        "used": 1_500,
        "available": 198_500,
        "bonus": 0,
        "spillover": 0,
    }
    assert text["daily"]["limit"] == 20_000
    assert text["daily"]["used"] == 500
    assert text["daily"]["remaining"] == 19_500
    assert text["daily"]["next_reset"].endswith("T00:00:00Z")
    assert text["fair_use_limit_reached"] is False


async def test_list_models_shows_the_plans_models_and_filters_by_provider(client: Client) -> None:
    result = data(await client.call_tool("list_models", {"provider": "anthropic"}))
    assert {m["id"] for m in result["models"]} == {"claude-haiku-4.5", "claude-sonnet-4.5"}
    model = result["models"][0]
    assert set(model) == {"id", "name", "provider", "context_window", "available", "reasoning_model"}


async def test_list_models_hides_models_off_the_plan_unless_asked(connect: object, state: EmulatorState) -> None:
    state.add_workspace("free-ws", "Free", plan="free")
    async with connect(env={"NEUROFLASH_WORKSPACE_ID": "free-ws"}) as client:  # type: ignore[operator]
        shown = data(await client.call_tool("list_models", {}))["models"]
        everything = data(await client.call_tool("list_models", {"include_unavailable": True}))["models"]
    assert all(m["available"] for m in shown)
    assert {m["id"] for m in shown} == set(catalog.PLANS["free"])
    assert len(everything) == len(catalog.MODELS)


async def test_generate_streams_text_and_charges_its_words(client: Client, state: EmulatorState) -> None:
    result = data(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Write a tagline."}))
    assert result["model"] == "openai/gpt-4.1-mini"
    assert result["finish_reason"] == "stop"
    assert result["words_used"] == len(result["text"].split()) > 0
    assert result["request_id"]
    assert result["workspace_id"] == catalog.MARKETING_WORKSPACE
    assert state.words_charged == result["words_used"]
    assert state.count("chat") == 1


async def test_generate_accepts_messages_and_a_system_prompt(client: Client) -> None:
    args = {
        "model": "openai/gpt-4.1-mini",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        "system": "Be brief.",
        "max_tokens": 5,
        "temperature": 0.2,
    }
    result = data(await client.call_tool("generate", args))
    assert result["finish_reason"] == "length"
    assert result["words_used"] == 5


async def test_snapshot_saves_and_is_found_again(client: Client, state: EmulatorState) -> None:
    saved = data(
        await client.call_tool(
            "snapshot",
            {
                "name": "Ship small",
                "core": "Small pull requests get reviewed faster and break less.",
                "type": "Principle",
                "tags": ["engineering"],
                "confidence": 0.9,
            },
        )
    )
    assert saved["id"]
    assert saved["type"] == "Principle"
    assert saved["tags"] == ["engineering"]
    assert state.snapshots[saved["id"]]["core"] == saved["core"]

    found = data(await client.call_tool("search_snapshots", {"query": "small pull requests"}))
    assert found["count"] == 1
    assert found["snapshots"][0]["id"] == saved["id"]
    assert 0 < found["snapshots"][0]["similarity"] <= 1

    fetched = data(await client.call_tool("get_snapshot", {"id": saved["id"]}))
    assert saved["note"] is None  # the answer was read in full
    assert fetched == {k: v for k, v in saved.items() if k != "note"}
