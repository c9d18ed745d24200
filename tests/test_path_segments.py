"""Every value that reaches an upstream URL path is held to the tool's rule, whichever way it came in.

The kind: a path segment an upstream could read as another route (dot segments, separators, percent-escapes a
gateway may decode into one, query and fragment marks, control characters, empty, over-long). Each entry point
(tool arguments, prompt and resource-template completions, resource reads, the default-workspace setting) is
tried with each, and the emulator counts what reached it: nothing may.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference, ResourceTemplateReference

from server.clock import FakeClock
from server.config import Settings
from server.errors import ConfigurationError
from server.features.resources import BRAND_VOICE, QUOTA
from server.sandbox import Emulator, EmulatorState, catalog
from tests.conftest import Connect
from tests.results import error
from tests.transports import serve

HOSTILE = {
    "dot-dot": "..",
    "dot": ".",
    "dots": "...",
    "slash": "/",
    "inner-slash": "a/b",
    "climb": "../quotas",
    "escaped-slash": "%2F",
    "escaped-dot-dot": "%2e%2e",
    "escaped-climb": "..%2F..",
    "question": "?",
    "query": "a?page=9",
    "hash": "#",
    "fragment": "a#b",
    "nul": "a\x00b",
    "newline": "a\r\nb",
    "delete": "a\x7fb",
    "space": "a b",
    "backslash": "a\\b",
    "non-ascii": "café",
    "empty": "",
    "over-long": "w" * 101,
    "huge": "w" * 100_000,
}
UUIDS_ONLY = {"route-name": "search", "not-a-uuid": "7d4f1c2e"}  # a word NeuralSnap reads as its own route


def upstream_requests(state: EmulatorState) -> int:
    """Every request that reached either upstream, token requests aside."""
    with state.lock:
        return sum(n for route, n in state.requests.items() if route != "token")


Entry = Callable[[Client, str], Awaitable[None]]


async def tool(client: Client, name: str, arguments: dict[str, Any]) -> None:
    assert error(await client.call_tool(name, arguments))["code"] == "invalid_arguments"


async def completion(client: Client, ref: PromptReference | ResourceTemplateReference, name: str, **ctx: str) -> None:
    completed = await client.complete(ref, {"name": name, "value": ""}, context_arguments=ctx)
    assert completed.completion.values == []


async def resource(client: Client, uri: str) -> None:
    with pytest.raises(MCPError) as raised:
        await client.read_resource(uri)
    assert "Traceback" not in str(raised.value)
    assert len(raised.value.error.message) <= 1_000  # the SDK quotes the URI; cut, with a note
    assert len(str(raised.value.error.data)) <= 2_000


BRAND = PromptReference(type="ref/prompt", name="write_in_brand_voice")
VOICE_TEMPLATE = ResourceTemplateReference(type="ref/resource", uri=BRAND_VOICE)
GENERATE = {"model": "gpt-4.1-mini", "prompt": "hi", "max_tokens": 5}
ENTRIES: dict[str, Entry] = {
    "check_quota": lambda c, v: tool(c, "check_quota", {"workspace_id": v}),
    "list_brand_voices": lambda c, v: tool(c, "list_brand_voices", {"workspace_id": v}),
    "list_models": lambda c, v: tool(c, "list_models", {"workspace_id": v}),
    "generate workspace_id": lambda c, v: tool(c, "generate", {**GENERATE, "workspace_id": v}),
    "generate brand_voice_id": lambda c, v: tool(c, "generate", {**GENERATE, "brand_voice_id": v}),
    "list_twins group": lambda c, v: tool(c, "list_twins", {"group": v}),
    "list_twins workspace_id": lambda c, v: tool(c, "list_twins", {"group": "g", "workspace_id": v}),
    "ask_twins workspace_id": lambda c, v: tool(
        c, "ask_twins", {"twin_ids": ["t"], "question": "q", "workspace_id": v}
    ),
    "prompt completion context": lambda c, v: completion(c, BRAND, "brand_voice_id", workspace_id=v),
    "template completion context": lambda c, v: completion(c, VOICE_TEMPLATE, "brand_voice_id", workspace_id=v),
    "quota resource": lambda c, v: resource(c, QUOTA.replace("{workspace_id}", v)),
    "brand voice resource": lambda c, v: resource(
        c, BRAND_VOICE.replace("{workspace_id}", v).replace("{brand_voice_id}", "bv")
    ),
}
SNAPSHOT_ENTRIES: dict[str, Entry] = {
    "get_snapshot": lambda c, v: tool(c, "get_snapshot", {"id": v}),
    "update_snapshot": lambda c, v: tool(c, "update_snapshot", {"id": v, "name": "n"}),
    "delete_snapshot": lambda c, v: tool(c, "delete_snapshot", {"id": v, "confirm": True}),
    "snapshot resource": lambda c, v: resource(c, f"neuralsnap://snapshots/{v}"),
}


async def run_entry(connect: Connect, state: EmulatorState, entry: Entry, values: dict[str, str]) -> None:
    """Each value of the table through one entry point of one server: each refused, none sent."""
    async with connect(env={"FLASHSNAP_TOOLSETS": "all"}) as client:
        for kind, value in values.items():
            before = upstream_requests(state)
            with anyio.fail_after(30):
                await entry(client, value)
            assert upstream_requests(state) == before, f"{kind} reached an upstream"


# In a completion's context an empty workspace_id is one not typed yet: the default workspace's voices complete.
NOT_TYPED = {kind: value for kind, value in HOSTILE.items() if value}


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
async def test_no_hostile_workspace_group_or_voice_reaches_an_upstream_path(
    connect: Connect, state: EmulatorState, entry: Entry, request: pytest.FixtureRequest
) -> None:
    values = NOT_TYPED if "completion" in request.node.callspec.id else HOSTILE
    await run_entry(connect, state, entry, values)


@pytest.mark.parametrize("entry", SNAPSHOT_ENTRIES.values(), ids=SNAPSHOT_ENTRIES.keys())
async def test_no_hostile_snapshot_id_reaches_an_upstream_path(
    connect: Connect, state: EmulatorState, entry: Entry
) -> None:
    await run_entry(connect, state, entry, {**HOSTILE, **UUIDS_ONLY})


@pytest.mark.parametrize("value", ["..", "w" * 100_000], ids=["dot-dot", "huge"])
async def test_a_completion_over_http_sends_nothing_and_answers_empty(
    emulator: Emulator, clock: FakeClock, state: EmulatorState, value: str
) -> None:
    """The reported case, over Streamable HTTP: `..` sent the token to another route, 100,000 characters answered
    error code 0 with a traceback."""
    async with serve("http", emulator, clock, mode="auto") as client:
        before = upstream_requests(state)
        with anyio.fail_after(30):
            await completion(client, BRAND, "brand_voice_id", workspace_id=value)
            # The same completion with a good workspace still completes.
            good = await client.complete(
                BRAND,
                {"name": "brand_voice_id", "value": ""},
                context_arguments={"workspace_id": catalog.MARKETING_WORKSPACE},
            )
    assert upstream_requests(state) - before == 1  # the good one's listing only
    assert good.completion.values


@pytest.mark.parametrize(
    "value", [v for v in HOSTILE.values() if v.strip()], ids=[k for k, v in HOSTILE.items() if v.strip()]
)
def test_a_default_workspace_that_could_be_another_route_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"NEUROFLASH_WORKSPACE_ID": value})
    assert "NEUROFLASH_WORKSPACE_ID" in raised.value.message


async def test_an_upstreams_own_workspace_id_is_held_to_the_same_rule(connect: Connect, state: EmulatorState) -> None:
    """The only workspace's id, as the upstream lists it, is used by default: `..` from there is refused too."""
    state.workspaces.clear()
    state.add_workspace("..", "Climber")
    async with connect() as client:
        before = state.count("quotas")
        err = error(await client.call_tool("check_quota", {}))
    assert err["code"] == "invalid_arguments"
    assert state.count("quotas") == before
    assert upstream_requests(state) == state.count("workspaces")
