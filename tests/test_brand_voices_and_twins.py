"""neuroflash's brand voices and digital twins through a real MCP client against the emulator: a voice's prompt
sent first whichever route answers it, the twin groups and their twins, and a question to twins sent once."""

from __future__ import annotations

import pytest
from mcp import Client

from server.sandbox import EmulatorState, catalog
from server.sandbox.records import Fault
from tests.conftest import Connect, sent, serve
from tests.results import data, error

VOICE = catalog.BRAND_VOICES[0]


# --- brand voices --------------------------------------------------------------------------------------------


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


# --- digital twins -------------------------------------------------------------------------------------------


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
