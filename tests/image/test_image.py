"""Smoke tests of the OCI image through real `podman run`: stdio, Streamable HTTP, hardening, contents.

Run by scripts/image.sh (`make image`, CI) with FLASHSNAP_TEST_IMAGE set; skipped otherwise.
Containers publish only on 127.0.0.1, and every one is removed when its test ends.
"""

from __future__ import annotations

import json
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from server.app import tool_selection
from server.config import Settings
from tests.image.podman import (
    HARDENED,
    IMAGE,
    LABEL,
    RUN,
    STATE_DIR,
    UID,
    host_environment,
    inspect,
    logs,
    needs_image,
    podman,
    removed_after,
    run_in_image,
    wait_exited,
    wait_healthy,
)
from tests.results import data
from tests.servers import free_port

pytestmark = [needs_image, pytest.mark.anyio]

ROOT = Path(__file__).parent.parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SERVER_NAME = json.loads((ROOT / "server.json").read_text())["name"]
TOOLS = set(tool_selection(Settings.from_env({})).enabled)  # the default toolset, as a plain start offers it
HARDENING = pytest.mark.parametrize("hardened", [False, True], ids=["plain", "read-only-no-caps"])


def flags(hardened: bool) -> tuple[str, ...]:
    return HARDENED if hardened else ()


def process_status(name: str) -> dict[str, str]:
    """The server process's (PID 1's) /proc status fields inside a running container."""
    status = podman("exec", name, "cat", "/proc/1/status")
    return dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)


@HARDENING
async def test_stdio_sandbox_lists_the_tools_calls_one_and_exits_0_when_stdin_closes(
    hardened: bool, tmp_path: Path
) -> None:
    name = f"{RUN}-stdio-{'hardened' if hardened else 'plain'}"
    args = ["run", "-i", "--name", name, "--label", LABEL, *flags(hardened), IMAGE, "--sandbox"]
    errlog = tmp_path / "stderr.txt"
    with removed_after(name), errlog.open("w") as err:
        with anyio.fail_after(90):
            server = StdioServerParameters(command="podman", args=args, env=host_environment())
            async with Client(stdio_client(server, errlog=err)) as client:
                assert "SANDBOX MODE" in (client.instructions or "")
                assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
                workspaces = data(await client.call_tool("list_workspaces", {}))["workspaces"]
                assert [w["name"] for w in workspaces] == ["Marketing Team", "Side Project"]
                # A write and a read back: the sandbox world lives in the state directory, the one writable place.
                saved = data(await client.call_tool("snapshot", {"name": "from a container", "core": "It works."}))
                assert data(await client.call_tool("get_snapshot", {"id": saved["id"]}))["name"] == "from a container"
        # The client closed stdin: the server ends by itself, with status 0.
        state = await wait_exited(name)
        assert state["ExitCode"] == 0, f"exit status {state['ExitCode']}:\n{errlog.read_text()[-3000:]}"
        assert not state["OOMKilled"]
    assert "Traceback" not in errlog.read_text()


@HARDENING
async def test_streamable_http_with_a_token_serves_refuses_and_stops_cleanly(hardened: bool) -> None:
    name = f"{RUN}-http-{'hardened' if hardened else 'plain'}"
    port = free_port()
    token = secrets.token_urlsafe(32)
    base = f"http://127.0.0.1:{port}"
    # The token reaches podman through its environment (`-e NAME` with no value), never its command line.
    env = host_environment(FLASHSNAP_HTTP_TOKEN=token)
    with removed_after(name):
        podman("run", "-d", "--name", name, "--label", LABEL, "-p", f"127.0.0.1:{port}:8000",
               "-e", "FLASHSNAP_HTTP_TOKEN", *flags(hardened), IMAGE, "--sandbox", "--transport", "streamable-http",
               env=env)  # fmt: skip
        health = await wait_healthy(base, name, token)
        assert health["status"] == "ok"
        assert (health["transport"], health["sandbox"], health["version"]) == ("streamable-http", True, VERSION)
        assert health["state"]["store"] == "sqlite"
        assert health["state"]["where"].startswith(STATE_DIR)

        async with httpx2.AsyncClient(base_url=base, timeout=10) as http:
            refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            wrong = await http.post("/mcp", json={}, headers={"Authorization": f"Bearer x{token}"})
            assert wrong.status_code == 401
            assert (await http.get("/metrics")).status_code == 401

        auth = {"Authorization": f"Bearer {token}"}
        generated: dict[str, Any] = {}
        with anyio.fail_after(60):
            async with (
                httpx2.AsyncClient(headers=auth, timeout=30) as authorized,
                Client(streamable_http_client(f"{base}/mcp", http_client=authorized)) as client,
            ):
                assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
                quota = data(await client.call_tool("check_quota", {}))
                assert quota["can_generate"] is True
                metrics = (await authorized.get(f"{base}/metrics")).text
                counted = r'flashsnap_tool_calls_total\{outcome="ok",tool="check_quota"\} 1\.0'
                assert re.search(counted, metrics), metrics

                # The server runs as the image's user, and with nothing more than the flags allow.
                status = process_status(name)
                assert status["Uid"].split() == [str(UID)] * 4, status["Uid"]
                assert status["Gid"].split() == [str(UID)] * 4, status["Gid"]
                if hardened:
                    assert int(status["CapEff"], 16) == 0
                    assert status["NoNewPrivs"] == "1"

                # `podman stop` (SIGTERM) while a generation streams: the call finishes, then the server
                # exits 0 rather than being killed when the stop timeout runs out.
                streaming = anyio.Event()

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    streaming.set()

                async def generate() -> None:
                    arguments = {
                        "model": "gpt-4.1-mini",
                        "prompt": "Write three sentences about tea.",
                        "max_tokens": 500,
                    }
                    generated.update(data(await client.call_tool("generate", arguments, progress_callback=on_progress)))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(generate)
                    await streaming.wait()
                    await anyio.to_thread.run_sync(lambda: podman("stop", "-t", "30", name, timeout=60))
        assert generated["finish_reason"] == "stop", generated
        assert generated["text"]
        state = await wait_exited(name)
        output = logs(name)
        assert state["ExitCode"] == 0, f"exit status {state['ExitCode']}:\n{output[-3000:]}"
        assert "Traceback" not in output
        assert token not in output


async def test_the_image_runs_as_a_non_root_user_with_the_labels_the_registry_reads() -> None:
    config: dict[str, Any] = json.loads(podman("image", "inspect", IMAGE))[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["flashsnap-mcp"]
    assert "8000/tcp" in config["ExposedPorts"]
    assert STATE_DIR in config["Volumes"]
    assert f"FLASHSNAP_STATE_DIR={STATE_DIR}" in config["Env"]
    labels = config["Labels"]
    assert labels["io.modelcontextprotocol.server.name"] == SERVER_NAME
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"] == "flashsnap-mcp"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    assert run_in_image("-u", entrypoint="id", flags=HARDENED).strip() == str(UID)
    assert run_in_image("--version", entrypoint="flashsnap-mcp").strip() == f"flashsnap-mcp {VERSION}"


async def test_the_ca_store_is_loaded_where_the_server_looks_for_it() -> None:
    """httpx2 on Linux trusts the operating system's store only: without it every real upstream call fails."""
    script = (
        "import ssl, httpx2; "
        "print(ssl.create_default_context().cert_store_stats()['x509_ca'], "
        "httpx2.create_ssl_context(trust_env=False).cert_store_stats()['x509_ca'])"
    )
    system, server = map(int, run_in_image("-c", script, entrypoint="python3", flags=HARDENED).split())
    assert system > 100, system
    assert server == system


async def test_the_runtime_holds_the_installed_package_and_nothing_from_the_build() -> None:
    script = """
import os, shutil, sys
import server
print(server.__file__)
print(shutil.which("uv") or "-")
print(" ".join(p for p in ("/src", "/opt/uv", "/root/.cache/uv", "/run/secrets") if os.path.exists(p)) or "-")
print(sys.version_info >= (3, 11))
"""
    as_root = ("--user", "0")  # to see into every directory, /root included
    where, uv, leftovers, python_ok = run_in_image("-c", script, entrypoint="python3", flags=as_root).split("\n")[:4]
    assert re.fullmatch(r"/opt/venv/lib/python3\.\d+/site-packages/server/__init__\.py", where), where
    assert (uv, leftovers, python_ok) == ("-", "-", "True")
    # No layer holds the build secret: not even the empty file a bind mount would leave behind.
    found = run_in_image("/", "-xdev", "-name", "ca_bundle", entrypoint="find", flags=as_root)
    assert found == ""
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).strip())
    assert size < 300_000_000, f"{size / 1e6:.0f} MB"


def test_inspect_helper_sees_no_container_left_by_this_run() -> None:
    """Runs last in this module: every container above was removed."""
    left = podman("ps", "-aq", "--filter", f"label={LABEL}").split()
    assert left == [], [inspect(c)["Name"] for c in left]
