"""Prompts: offered only when the tools they ask for are on, naming only tools that are on, with completions."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import GetPromptResult, PromptReference, TextContent

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import MODES, Connect
from tests.results import data
from tests.test_instructions import named
from tests.test_tool_selection import http_client
from tests.transports import TRANSPORTS, serve

PROMPTS = {"write_in_brand_voice", "crystallize_conversation", "test_copy_on_twins", "check_quota_before_job"}
ARGS = {
    "write_in_brand_voice": {"brief": "A tagline for a coffee shop"},
    "crystallize_conversation": {"focus": "the decisions"},
    "test_copy_on_twins": {"copy": "Fresh beans, every morning."},
    "check_quota_before_job": {"job": "40 product texts", "words": "6000"},
}


def text(result: GetPromptResult) -> str:
    (message,) = result.messages
    assert message.role == "user"
    assert isinstance(message.content, TextContent)
    return message.content.text


def ref(name: str) -> PromptReference:
    return PromptReference(type="ref/prompt", name=name)


async def prompt_names(client: Client) -> set[str]:
    return {p.name for p in (await client.list_prompts()).prompts}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
async def test_prompts_are_listed_with_arguments_and_fetched_naming_only_tools_that_are_on(
    emulator: Emulator, state: EmulatorState, clock: FakeClock, transport: str, mode: str
) -> None:
    with anyio.fail_after(60):
        async with serve(transport, emulator, clock, "--toolsets", "all", mode=mode) as client:
            listed = {p.name: p for p in (await client.list_prompts()).prompts}
            assert set(listed) == PROMPTS
            brand = listed["write_in_brand_voice"]
            assert brand.title
            assert brand.description
            assert [(a.name, a.required) for a in brand.arguments or []] == [
                ("brief", True), ("brand_voice_id", False), ("workspace_id", False)
            ]  # fmt: skip
            assert all(a.description for p in listed.values() for a in p.arguments or [])
            enabled = {t.name for t in (await client.list_tools()).tools}
            for name, args in ARGS.items():
                fetched = text(await client.get_prompt(name, args))
                assert named(fetched) <= enabled
            brand_text = text(await client.get_prompt("write_in_brand_voice", {**ARGS["write_in_brand_voice"]}))
            assert "A tagline for a coffee shop" in brand_text
            assert {"list_brand_voices", "generate", "check_quota", "list_models"} <= named(brand_text)
            assert "maybe_processed" in brand_text
            chosen = text(await client.get_prompt("write_in_brand_voice", {"brief": "x", "brand_voice_id": "bv-1"}))
            assert "list_brand_voices" not in chosen
            assert '"bv-1"' in chosen
            crystallize = text(await client.get_prompt("crystallize_conversation", {}))
            assert {"crystallize", "search_snapshots"} <= named(crystallize)
            assert "the decisions" in text(
                await client.get_prompt("crystallize_conversation", ARGS["crystallize_conversation"])
            )
            twins = text(await client.get_prompt("test_copy_on_twins", {**ARGS["test_copy_on_twins"], "group": "g1"}))
            assert named(twins) == {"list_twins", "ask_twins"}
            assert '"g1"' in twins
            quota = text(await client.get_prompt("check_quota_before_job", ARGS["check_quota_before_job"]))
            assert named(quota) == {"check_quota", "generate"}
            assert "6000 words" in quota
            with pytest.raises(MCPError, match="brief"):
                await client.get_prompt("write_in_brand_voice", {})
    assert state.count("chat") == 0  # fetching a prompt calls nothing upstream


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_follow_the_selection_and_name_only_tools_that_are_on(connect: Connect, mode: str) -> None:
    async with connect(mode=mode) as client:  # default toolsets: no crystallize, no twins
        assert await prompt_names(client) == {"write_in_brand_voice", "check_quota_before_job"}
        with pytest.raises(MCPError):
            await client.get_prompt("crystallize_conversation", {})
    async with connect(mode=mode, read_only=True) as client:
        assert await prompt_names(client) == {"check_quota_before_job"}
        quota = text(await client.get_prompt("check_quota_before_job", ARGS["check_quota_before_job"]))
        assert named(quota) == {"check_quota"}
    async with connect(mode=mode, tools=("crystallize", "generate", "list_brand_voices")) as client:
        assert await prompt_names(client) == {"write_in_brand_voice", "crystallize_conversation"}
        brand = text(await client.get_prompt("write_in_brand_voice", ARGS["write_in_brand_voice"]))
        assert named(brand) == {"list_brand_voices", "generate"}
        assert named(text(await client.get_prompt("crystallize_conversation", {}))) == {"crystallize"}
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "twins"}) as client:
        assert await prompt_names(client) == {"test_copy_on_twins"}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
async def test_prompt_arguments_complete_from_the_service(
    emulator: Emulator, clock: FakeClock, transport: str, mode: str
) -> None:
    with anyio.fail_after(60):
        async with serve(transport, emulator, clock, mode=mode) as client:
            workspaces = data(await client.call_tool("list_workspaces", {}))["workspaces"]
            voices = data(await client.call_tool("list_brand_voices", {}))["brand_voices"]
            brand = ref("write_in_brand_voice")
            completed = (await client.complete(brand, {"name": "workspace_id", "value": ""})).completion
            assert completed.values == [w["id"] for w in workspaces]
            completed = (await client.complete(brand, {"name": "brand_voice_id", "value": ""})).completion
            assert completed.values == [v["id"] for v in voices]
            assert completed.total == len(voices)
            assert completed.has_more is False
            # What the user typed narrows the values: an id's start, or a part of the name.
            first = voices[0]
            by_id = (await client.complete(brand, {"name": "brand_voice_id", "value": first["id"][:5]})).completion
            assert first["id"] in by_id.values
            by_name = await client.complete(brand, {"name": "brand_voice_id", "value": first["name"][1:4].upper()})
            assert first["id"] in by_name.completion.values
            nothing = await client.complete(brand, {"name": "brand_voice_id", "value": "no such voice"})
            assert nothing.completion.values == []
            # Free-text arguments have nothing to complete.
            assert (await client.complete(brand, {"name": "brief", "value": "a"})).completion.values == []
            quota = ref("check_quota_before_job")
            assert (await client.complete(quota, {"name": "workspace_id", "value": ""})).completion.values
        # No completion through a tool that is off, nor for a prompt that is off.
        async with serve(transport, emulator, clock, "--tools", "check_quota", mode=mode) as client:
            quota = ref("check_quota_before_job")
            assert (await client.complete(quota, {"name": "workspace_id", "value": ""})).completion.values == []
            brand = ref("write_in_brand_voice")
            assert (await client.complete(brand, {"name": "brand_voice_id", "value": ""})).completion.values == []


@pytest.mark.parametrize("mode", MODES)
async def test_http_headers_hide_prompts_whose_tools_they_turn_off(
    emulator: Emulator, clock: FakeClock, mode: str
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http")
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with http_client(server.url, {}, mode) as plain:
            assert await prompt_names(plain) == {"write_in_brand_voice", "check_quota_before_job"}
            quota = text(await plain.get_prompt("check_quota_before_job", ARGS["check_quota_before_job"]))
            assert "generate" in named(quota)
        async with http_client(server.url, {"X-MCP-Readonly": "true"}, mode) as reader:
            assert await prompt_names(reader) == {"check_quota_before_job"}
            with pytest.raises(MCPError, match="X-MCP"):
                await reader.get_prompt("write_in_brand_voice", ARGS["write_in_brand_voice"])
            quota = text(await reader.get_prompt("check_quota_before_job", ARGS["check_quota_before_job"]))
            assert named(quota) == {"check_quota"}  # the text follows the headers too
            brand = ref("write_in_brand_voice")
            assert (await reader.complete(brand, {"name": "brand_voice_id", "value": ""})).completion.values == []
        async with http_client(server.url, {"X-MCP-Tools": "check_quota"}, mode) as narrowed:
            assert await prompt_names(narrowed) == {"check_quota_before_job"}
            quota_ref = ref("check_quota_before_job")
            # list_workspaces is left out by the header: no completion through it.
            assert (await narrowed.complete(quota_ref, {"name": "workspace_id", "value": ""})).completion.values == []
