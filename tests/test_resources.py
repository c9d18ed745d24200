"""Resources: snapshots, quotas and brand voices read through the tools' services, listed and completed through a
short shared cache, and offered only while the tools they read through are on."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceTemplateReference, TextResourceContents

from server.clock import FakeClock
from server.config import Settings
from server.features.resources import BRAND_VOICE, LISTING_TTL_S, QUOTA, SNAPSHOT
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import MODES, Connect
from tests.results import data
from tests.test_tool_selection import http_client
from tests.transports import TRANSPORTS, serve

ALL_TEMPLATES = {SNAPSHOT, QUOTA, BRAND_VOICE}


async def read(client: Client, uri: str) -> dict[str, object]:
    (content,) = (await client.read_resource(uri)).contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    parsed: dict[str, object] = json.loads(content.text)
    return parsed


async def templates(client: Client) -> set[str]:
    return {t.uri_template for t in (await client.list_resource_templates()).resource_templates}


async def complete(client: Client, template: str, name: str, value: str = "", **context: str) -> list[str]:
    ref = ResourceTemplateReference(type="ref/resource", uri=template)
    return (
        await client.complete(ref, {"name": name, "value": value}, context_arguments=context or None)
    ).completion.values


async def save(client: Client, name: str) -> str:
    saved = data(await client.call_tool("snapshot", {"name": name, "core": f"{name}, kept."}))
    assert isinstance(saved["id"], str)
    return saved["id"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
async def test_resources_are_listed_read_and_completed(
    emulator: Emulator, clock: FakeClock, transport: str, mode: str
) -> None:
    with anyio.fail_after(60):
        async with serve(transport, emulator, clock, "--toolsets", "all", mode=mode) as client:
            assert await templates(client) == ALL_TEMPLATES
            first = await save(client, "Ship small")
            listed = {r.uri: r for r in (await client.list_resources()).resources}
            assert f"neuralsnap://snapshots/{first}" in listed
            assert listed[f"neuralsnap://snapshots/{first}"].name == "Ship small"
            snapshot = await read(client, f"neuralsnap://snapshots/{first}")
            assert snapshot["name"] == "Ship small"
            assert snapshot["id"] == first
            workspaces = await complete(client, QUOTA, "workspace_id")
            assert workspaces == [w["id"] for w in data(await client.call_tool("list_workspaces", {}))["workspaces"]]
            quota = await read(client, f"neuroflash://workspaces/{workspaces[0]}/quota")
            assert quota["workspace_id"] == workspaces[0]
            assert quota["quotas"]
            voices = await complete(client, BRAND_VOICE, "brand_voice_id", workspace_id=workspaces[0])
            assert voices
            voice = await read(client, f"neuroflash://workspaces/{workspaces[0]}/brand-voices/{voices[0]}")
            assert voice["id"] == voices[0]
            assert voice["name"]
            assert await complete(client, SNAPSHOT, "snapshot_id", first[:6]) == [first]
            assert await complete(client, SNAPSHOT, "snapshot_id", "zzz") == []


@pytest.mark.parametrize("mode", MODES)
async def test_resource_failures_follow_the_tools_error_rules(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "all"}) as client:
        with pytest.raises(MCPError) as missing:
            await client.read_resource("neuralsnap://snapshots/00000000-0000-0000-0000-000000000000")
        assert missing.value.error.data["code"] == "not_found"
        assert missing.value.error.data["hint"]
        gets = state.count("snapshot_get")
        with pytest.raises(MCPError) as malformed:
            await client.read_resource("neuralsnap://snapshots/not-a-uuid")
        assert malformed.value.error.data["code"] == "not_found"
        assert state.count("snapshot_get") == gets  # nothing sent for an id that cannot be one
        (workspace,) = await complete(client, QUOTA, "workspace_id")
        with pytest.raises(MCPError) as no_voice:
            await client.read_resource(f"neuroflash://workspaces/{workspace}/brand-voices/bv-nope")
        assert "list_brand_voices" in no_voice.value.error.data["hint"]


@pytest.mark.parametrize("mode", MODES)
async def test_listings_and_completions_cost_one_upstream_request_per_account_every_few_seconds(
    connect: Connect, state: EmulatorState, clock: FakeClock, mode: str
) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "all"}) as client:
        await save(client, "Cached")
        await client.list_resources()
        listings = state.count("snapshot_list")
        assert listings == 1
        await client.list_resources()  # within the cache time: no request
        assert await complete(client, SNAPSHOT, "snapshot_id")
        assert state.count("snapshot_list") == listings
        clock.advance(LISTING_TTL_S + 1)
        await client.list_resources()
        assert state.count("snapshot_list") == listings + 1
        await complete(client, QUOTA, "workspace_id")
        workspaces = state.count("workspaces")
        for typed in ("", "7", "7d"):
            await complete(client, QUOTA, "workspace_id", typed)
        assert state.count("workspaces") == workspaces
        (workspace,) = await complete(client, QUOTA, "workspace_id")
        await complete(client, BRAND_VOICE, "brand_voice_id", workspace_id=workspace)
        voices = state.count("brand_voices")
        for typed in ("b", "bv", "bv-"):
            await complete(client, BRAND_VOICE, "brand_voice_id", typed, workspace_id=workspace)
        assert state.count("brand_voices") == voices


@pytest.mark.parametrize("mode", MODES)
async def test_resources_are_offered_only_while_their_tools_are_on(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    async with connect(mode=mode) as client:  # default toolsets: no list_snapshots, so no listing
        assert await templates(client) == ALL_TEMPLATES
        await save(client, "Unlisted")
        assert (await client.list_resources()).resources == []
        assert await complete(client, SNAPSHOT, "snapshot_id") == []
    assert state.count("snapshot_list") == 0
    async with connect(mode=mode, tools=("check_quota",)) as client:
        assert await templates(client) == {QUOTA}
        with pytest.raises(MCPError):
            await client.read_resource("neuralsnap://snapshots/00000000-0000-0000-0000-000000000000")
        assert await complete(client, QUOTA, "workspace_id") == []  # list_workspaces is off
        assert await complete(client, BRAND_VOICE, "brand_voice_id") == []
    assert state.count("snapshot_get") == 0


@pytest.mark.parametrize("mode", MODES)
async def test_http_headers_hide_resources_whose_tools_they_turn_off(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, mode: str
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", toolsets=("all",))
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with http_client(server.url, {}, mode) as plain:
            assert await templates(plain) == ALL_TEMPLATES
            first = await save(plain, "Over HTTP")
            assert [r.uri for r in (await plain.list_resources()).resources] == [f"neuralsnap://snapshots/{first}"]
        async with http_client(server.url, {"X-MCP-Tools": "check_quota,list_workspaces"}, mode) as narrowed:
            assert await templates(narrowed) == {QUOTA}
            assert (await narrowed.list_resources()).resources == []
            with pytest.raises(MCPError, match="X-MCP"):
                await narrowed.read_resource(f"neuralsnap://snapshots/{first}")
            assert await complete(narrowed, SNAPSHOT, "snapshot_id") == []
            (workspace,) = await complete(narrowed, QUOTA, "workspace_id")
            assert (await read(narrowed, f"neuroflash://workspaces/{workspace}/quota"))["quotas"]
    assert state.count("snapshot_get") == 0
