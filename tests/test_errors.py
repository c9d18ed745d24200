"""Each failure a model can meet: an isError result saying what to do, and no request that must not go out."""

from __future__ import annotations

import logging

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from server.sandbox import EmulatorState, catalog
from server.sandbox.records import Fault
from tests.conftest import Connect
from tests.results import error, text

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Write a tagline."}


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("generate", {"model": "gpt-4.1-mini", "prompt": "x", "temperature": 3}, "temperature"),
        ("generate", {"model": "", "prompt": "x"}, "model"),
        (
            "generate",
            {"model": "gpt-4.1-mini", "prompt": "x", "reasoning_effort": "huge"},
            "reasoning_effort",
        ),
        ("list_models", {"provider": "acme"}, "provider"),
        ("check_quota", {"workspace_id": "../admin"}, "workspace_id"),
        ("snapshot", {"name": "n", "core": "c", "confidence": 1.5}, "confidence"),
        ("snapshot", {"name": "n", "core": "c", "type": "Opinion"}, "type"),
        ("snapshot", {"core": "c"}, "name"),
        ("search_snapshots", {"query": "x", "limit": 0}, "limit"),
        ("get_snapshot", {"id": "a/b"}, "id"),
    ],
)
async def test_bad_arguments_name_the_field_and_send_nothing(
    client: Client, state: EmulatorState, tool: str, args: dict[str, object], field: str
) -> None:
    result = await client.call_tool(tool, args)
    assert result.is_error
    assert field in text(result)
    assert sum(state.requests.values()) == 0


async def test_generate_needs_exactly_one_of_prompt_or_messages(client: Client, state: EmulatorState) -> None:
    for args in ({"model": "gpt-4.1-mini"}, {**GENERATE, "messages": [{"role": "user", "content": "x"}]}):
        err = error(await client.call_tool("generate", args))
        assert err["code"] == "invalid_arguments"
        assert "prompt or messages" in err["message"]
    assert sum(state.requests.values()) == 0


async def test_missing_neuroflash_credentials_disable_only_neuroflash_tools(
    connect: Connect, state: EmulatorState
) -> None:
    async with connect(drop=("NEUROFLASH_CLIENT_SECRET",)) as client:
        err = error(await client.call_tool("list_workspaces", {}))
        saved = await client.call_tool("snapshot", {"name": "n", "core": "c"})
    assert err["code"] == "missing_credential"
    assert "NEUROFLASH_CLIENT_SECRET" in err["message"]
    assert not saved.is_error
    assert state.count("token") == 0


async def test_missing_neuralsnap_key_names_the_variable(connect: Connect, state: EmulatorState) -> None:
    async with connect(drop=("NEURALSNAP_API_KEY",)) as client:
        err = error(await client.call_tool("search_snapshots", {"query": "x"}))
        workspaces = await client.call_tool("list_workspaces", {})
    assert "NEURALSNAP_API_KEY" in err["message"]
    assert not workspaces.is_error
    assert state.count("snapshot_search") == 0


async def test_rejected_client_credentials_are_final(connect: Connect, state: EmulatorState) -> None:
    async with connect(env={"NEUROFLASH_CLIENT_SECRET": "wrong"}) as client:
        err = error(await client.call_tool("list_workspaces", {}))
    assert err["code"] == "credentials_rejected"
    assert "NEUROFLASH_CLIENT_SECRET" in err["hint"]
    assert "wrong" not in str(err)
    assert state.count("token") == 1  # no retry loop on a 401 from the token endpoint
    assert state.count("workspaces") == 0


async def test_unknown_workspace_says_where_to_look(client: Client, state: EmulatorState) -> None:
    err = error(await client.call_tool("check_quota", {"workspace_id": "no-such-workspace"}))
    assert err["code"] == "not_found"
    assert "list_workspaces" in err["hint"]
    assert err["request_id"]


async def test_several_workspaces_without_default_list_the_choices(client: Client, state: EmulatorState) -> None:
    state.add_workspace("second-ws", "Second")
    err = error(await client.call_tool("list_models", {}))
    assert err["code"] == "invalid_arguments"
    assert "second-ws (Second)" in err["hint"]
    assert catalog.MARKETING_WORKSPACE in err["hint"]
    assert state.count("models") == 0


async def test_model_off_the_plan_points_to_list_models(connect: Connect, state: EmulatorState) -> None:
    state.add_workspace("free-ws", "Free", plan="free")
    async with connect(env={"NEUROFLASH_WORKSPACE_ID": "free-ws"}) as client:
        err = error(await client.call_tool("generate", {**GENERATE, "model": "gpt-4.1"}))
    assert err["code"] == "model_not_available"
    assert "list_models" in err["hint"]
    assert state.count("chat") == 0  # refused from the cached model list: nothing was sent
    assert state.words_charged == 0


async def test_refused_generate_sends_no_request_when_daily_quota_spent(client: Client, state: EmulatorState) -> None:
    state.set_quota(catalog.MARKETING_WORKSPACE, used_daily=20_000)
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "quota_exhausted"
    assert err["period"] == "daily"
    assert err["resets_at"].endswith("T00:00:00+00:00")
    assert err["resets_at"] in err["hint"]
    assert state.count("chat") == 0


async def test_refused_generate_sends_no_request_when_monthly_quota_spent(client: Client, state: EmulatorState) -> None:
    state.set_quota(catalog.MARKETING_WORKSPACE, used=200_000)
    err = error(await client.call_tool("generate", GENERATE))
    assert err["period"] == "monthly"
    assert "billing period" in err["hint"]
    assert state.count("chat") == 0


async def test_refused_generate_sends_no_request_when_fair_use_reached(client: Client, state: EmulatorState) -> None:
    state.set_quota(catalog.MARKETING_WORKSPACE, fair_use_reached=True)
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "fair_use_reached"
    assert state.count("chat") == 0


async def test_quota_spent_upstream_after_admission_names_the_period(client: Client, state: EmulatorState) -> None:
    assert not (await client.call_tool("check_quota", {})).is_error  # the quota book now says "room left"
    state.set_quota(catalog.MARKETING_WORKSPACE, used_daily=20_000)  # spent elsewhere, e.g. in the web app
    err = error(await client.call_tool("generate", GENERATE))
    assert err["code"] == "quota_exhausted"
    assert err["period"] == "daily"
    assert err["request_id"]  # the upstream's 429 answered this one
    assert state.count_status("chat", 429) == 1
    assert state.words_charged == 0


async def test_invalid_neuralsnap_key_is_final(connect: Connect, state: EmulatorState) -> None:
    async with connect(env={"NEURALSNAP_API_KEY": "ns_live_revoked"}) as client:
        err = error(await client.call_tool("snapshot", {"name": "n", "core": "c"}))
    assert err["code"] == "credentials_rejected"
    assert "NEURALSNAP_API_KEY" in err["hint"]
    assert "ns_live_revoked" not in text_of(err)
    assert state.count("snapshot_create") == 1
    assert state.snapshots == {}


def text_of(err: dict[str, object]) -> str:
    return " ".join(str(v) for v in err.values())


async def test_unknown_snapshot_points_to_search(client: Client) -> None:
    err = error(await client.call_tool("get_snapshot", {"id": "00000000-0000-4000-8000-000000000000"}))
    assert err["code"] == "not_found"
    assert "search_snapshots" in err["hint"]


async def test_a_read_that_fails_once_is_retried(client: Client, state: EmulatorState) -> None:
    state.inject("workspaces", Fault(status=503))
    assert not (await client.call_tool("list_workspaces", {})).is_error
    assert state.count("workspaces") == 2


async def test_a_read_that_keeps_failing_says_it_is_safe_to_retry(client: Client, state: EmulatorState) -> None:
    state.inject("workspaces", Fault(status=503, times=10))
    err = error(await client.call_tool("list_workspaces", {}))
    assert err["code"] == "upstream_unavailable"
    assert err["maybe_processed"] is False
    assert err["request_id"]
    assert state.count("workspaces") == 4  # a bounded number of attempts


async def test_a_crash_is_a_short_internal_error_with_the_traceback_on_stderr(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    from server.tooling.calls import tool_call

    async def explode() -> str:
        raise RuntimeError("secret internals")

    async with connect() as client:
        # The app under test, with one extra tool that crashes, wrapped like every real tool.
        assert isinstance(client.server, MCPServer)
        client.server.add_tool(tool_call(explode), name="explode")
        with caplog.at_level(logging.ERROR):
            result = await client.call_tool("explode", {})
    assert result.is_error
    assert "Internal error" in text(result)
    assert "secret internals" not in text(result)
    assert "secret internals" in caplog.text
    assert "Traceback" in caplog.text


async def test_a_spent_neuralsnap_rate_limit_says_when_to_retry(client: Client, state: EmulatorState) -> None:
    state.set_rate_limit(1, window_s=3600)
    assert not (await client.call_tool("search_snapshots", {"query": "x"})).is_error
    err = error(await client.call_tool("search_snapshots", {"query": "x"}))
    assert err["code"] == "rate_limited"
    assert err["scope"] == "neuralsnap"
    reset = next(iter(state.windows.values())).reset_at
    assert err["retry_after_s"] == pytest.approx(reset - state.clock.now())
