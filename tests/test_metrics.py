"""Prometheus metrics at /metrics: after a scripted burst they agree with what the emulator counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.loopback import LoopbackServer
from server.sandbox.records import Fault
from server.transports.http import build_http_app
from tests.results import data, error

TOKEN = "metrics-test-token-0123456789"
NEURALSNAP_ROUTES = ("snapshot_create", "snapshot_get", "snapshot_list", "snapshot_search")
NEUROFLASH_ROUTES = ("workspaces", "quotas", "models", "chat")
WORKSPACE = catalog.MARKETING_WORKSPACE
SPENT = "5e1f0000-0000-4000-8000-00000000dead"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@asynccontextmanager
async def server(emulator: Emulator, clock: FakeClock, **overrides: object) -> AsyncIterator[str]:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", state="memory", **overrides)
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as running:
        yield running.url


async def test_metrics_after_a_burst_match_what_the_emulator_saw(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    state.set_rate_limit(5, 10.0)  # twelve snapshots need three windows: the gate makes them wait
    state.inject("snapshot_create", Fault(status=429, retry_after_s=2, times=2))  # two upstream 429s, retried
    state.add_workspace(SPENT, "Spent", daily=100)
    state.set_quota(SPENT, used_daily=100)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with server(emulator, clock, http_token=TOKEN, max_wait_s=600) as url:
        http = httpx2.AsyncClient(headers=auth, timeout=30)
        async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
            calls: list[tuple[str, dict[str, object]]] = [
                ("snapshot", {"name": f"s{i}", "core": "burst"}) for i in range(12)
            ]
            short = {"model": "gpt-4.1-mini", "workspace_id": WORKSPACE, "max_tokens": 500}
            calls += [("generate", {**short, "prompt": f"p{i}"}) for i in range(3)]
            calls.append(("list_models", {"workspace_id": WORKSPACE}))

            async def call(tool: str, arguments: dict[str, object]) -> None:
                data(await client.call_tool(tool, arguments))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for tool, arguments in calls:
                        tg.start_soon(call, tool, arguments)
                data(await client.call_tool("search_snapshots", {"query": "burst"}))
                refused = error(
                    await client.call_tool(
                        "generate", {"model": "gpt-4.1-mini", "prompt": "x", "workspace_id": SPENT, "max_tokens": 500}
                    )
                )
                assert refused["code"] == "quota_exhausted"
            assert (await httpx2.AsyncClient().get(f"{url}/metrics")).status_code == 401  # the same token as /mcp
            scraped = await http.get(f"{url}/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    m = parse(scraped.text)

    with state.lock:
        neuralsnap = sum(state.requests[r] for r in NEURALSNAP_ROUTES)
        neuroflash = sum(state.requests[r] for r in NEUROFLASH_ROUTES)
        upstream_429s = sum(n for (route, status), n in state.responses.items() if status == 429)
        tokens, words = state.requests["token"], state.words_charged
    assert upstream_429s == 2
    assert total(m, "flashsnap_upstream_requests_total", service="neuralsnap") == neuralsnap == 12 + 2 + 1
    assert total(m, "flashsnap_upstream_requests_total", service="neuroflash") == neuroflash
    assert total(m, "flashsnap_upstream_requests_total", service="neuralsnap", status="429") == upstream_429s
    assert total(m, "flashsnap_upstream_429_total", service="neuralsnap") == upstream_429s
    assert total(m, "flashsnap_upstream_retries_total", service="neuralsnap", reason="rate_limited") == 2
    assert total(m, "flashsnap_token_requests_total", outcome="ok") == tokens == 1
    assert total(m, "flashsnap_words_spent_total", workspace=WORKSPACE) == words > 0
    assert total(m, "flashsnap_tool_calls_total", tool="snapshot", outcome="ok") == 12
    assert total(m, "flashsnap_tool_calls_total", tool="generate", outcome="quota_exhausted") == 1
    assert total(m, "flashsnap_generate_refusals_total", reason="daily_quota") == 1
    assert total(m, "flashsnap_tool_call_duration_seconds_count", tool="snapshot") == 12
    # Every attempt passed the gate; the twelve snapshots waited for windows to open.
    assert total(m, "flashsnap_gate_wait_seconds_count", service="neuralsnap") == neuralsnap
    assert total(m, "flashsnap_gate_wait_seconds_sum", service="neuralsnap") >= 10.0
    assert total(m, "flashsnap_gate_queued", service="neuralsnap") == 0
    assert total(m, "flashsnap_rate_limit_limit", service="neuralsnap") == 5
    assert total(m, "flashsnap_generation_slots_in_use") == 0
    # Endpoints are route templates, and nothing secret or per-request appears anywhere.
    endpoints = {dict(ls)["endpoint"] for (n, ls) in m if n == "flashsnap_upstream_requests_total"}
    assert any(e.endswith("/api/usage-service/v1/workspaces/{id}/quotas") for e in endpoints), endpoints
    assert not any(WORKSPACE in e for e in endpoints)
    for secret in (catalog.DEMO_API_KEY, catalog.DEMO_CLIENT_SECRET, TOKEN, *state.issued):
        assert secret not in scraped.text
    credentials = {dict(ls)["credential"] for (n, ls) in m if n == "flashsnap_rate_limit_limit"}
    assert len(credentials) == 1
    assert all(len(c) == 8 for c in credentials)


async def test_stdio_serves_metrics_only_on_the_port_it_is_given(emulator: Emulator, clock: FakeClock) -> None:
    """Over stdio there is nothing to scrape unless FLASHSNAP_METRICS_PORT is set; then it counts the calls."""
    from server.app import create_app
    from tests.servers import free_port

    port = free_port()
    settings = Settings.from_env(emulator.environment(), state="memory", metrics_port=port)
    async with Client(create_app(settings, clock=clock)) as client, httpx2.AsyncClient() as http:
        data(await client.call_tool("list_workspaces", {}))
        scraped = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert total(parse(scraped.text), "flashsnap_tool_calls_total", tool="list_workspaces", outcome="ok") == 1
