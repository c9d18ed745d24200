"""The team deployment in deploy/, brought up with podman-compose: two replicas of the image on one Valkey.

In sandbox mode (deploy/compose.sandbox.yaml) each replica embeds its own emulator, and the
emulators act as one upstream through the sandbox world they share. What the replicas must do
together, as the README promises for live replicas: one token request, and no upstream 429 even
when more calls come than the rate-limit window allows (the surplus is refused before sending);
and each writes an audit file of its own on the one audit volume, one record per call, each verifying.

Run by scripts/image.sh where podman-compose runs, with a local stand-in for the Valkey image
(FLASHSNAP_TEST_VALKEY_IMAGE); skipped otherwise. The replicas are published on loopback ports only.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.image.podman import IMAGE, RUN, host_environment, needs_image, podman, wait_healthy
from tests.results import data, error
from tests.servers import free_port

VALKEY_IMAGE = os.environ.get("FLASHSNAP_TEST_VALKEY_IMAGE", "")
DEPLOY = Path(__file__).parent.parent.parent / "deploy"
FILES = ("-f", str(DEPLOY / "compose.yaml"), "-f", str(DEPLOY / "compose.sandbox.yaml"))
WINDOW_LIMIT = 100  # the sandbox's NeuralSnap limit per hourly window

pytestmark = [
    needs_image,
    pytest.mark.skipif(
        not VALKEY_IMAGE or shutil.which("podman-compose") is None,
        reason="needs podman-compose and a Valkey image (FLASHSNAP_TEST_VALKEY_IMAGE): `make image` provides both",
    ),
    pytest.mark.anyio,
]


class Deployment:
    def __init__(self, urls: list[str], token: str) -> None:
        self.urls = urls
        self.auth = {"Authorization": f"Bearer {token}"}

    @contextlib.asynccontextmanager
    async def client(self, replica: int) -> AsyncIterator[Client]:
        async with (
            httpx2.AsyncClient(headers=self.auth, timeout=60) as http,
            Client(streamable_http_client(f"{self.urls[replica]}/mcp", http_client=http)) as client,
        ):
            yield client

    async def metric(self, name: str, replica: int | None = None, **labels: str) -> float:
        """`name` summed over every series with these labels, on one replica or all of them (absent counts 0)."""
        total = 0.0
        async with httpx2.AsyncClient(headers=self.auth, timeout=10) as http:
            for url in self.urls if replica is None else [self.urls[replica]]:
                answer = await http.get(f"{url}/metrics")
                assert answer.status_code == 200, answer.text
                for series, value in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", answer.text, re.MULTILINE):
                    if all(f'{k}="{v}"' in series for k, v in labels.items()):
                        total += float(value)
        return total


@contextlib.contextmanager
def compose_up(tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    """`podman-compose up` of the sandbox deployment under this run's project name; `down -v` after, always."""
    token = secrets.token_urlsafe(32)
    env_file = tmp_path / "flashsnap.env"
    env_file.write_text(f"FLASHSNAP_HTTP_TOKEN={token}\n")
    env_file.chmod(0o600)
    ports = [free_port(), free_port()]
    env = host_environment(
        FLASHSNAP_IMAGE=IMAGE,
        VALKEY_IMAGE=VALKEY_IMAGE,
        VALKEY_PASSWORD=secrets.token_urlsafe(32),
        FLASHSNAP_AUDIT_KEY=secrets.token_urlsafe(32),
        FLASHSNAP_ENV_FILE=str(env_file),
        FLASHSNAP_PORT_1=str(ports[0]),
        FLASHSNAP_PORT_2=str(ports[1]),
    )
    log = tmp_path / "compose.log"

    def compose(*args: str) -> int:
        with log.open("a") as out:
            command = ["podman-compose", "-p", RUN, *FILES, *args]
            return subprocess.run(command, stdout=out, stderr=out, env=env, timeout=180, check=False).returncode

    try:
        assert compose("up", "-d") == 0, log.read_text()[-4000:]
        yield [f"http://127.0.0.1:{port}" for port in ports], token
    finally:
        compose("down", "-v")
        network = ["podman", "network", "rm", "-f", f"{RUN}_default"]  # `down` leaves it
        subprocess.run(network, capture_output=True, timeout=60, check=False)


def container(service: str) -> str:
    return f"{RUN}_{service}_1"  # podman-compose's container names


async def test_two_replicas_on_one_valkey_share_one_token_and_one_budget(tmp_path: Path) -> None:
    with compose_up(tmp_path) as (urls, token):
        for n, url in enumerate(urls, start=1):
            health = await wait_healthy(url, container(f"flashsnap-{n}"), token, within_s=90)
            assert (health["status"], health["sandbox"], health["stateless"]) == ("ok", True, True)
            assert health["state"]["store"] == "redis"
            assert health["state"]["reachable"] is True
        deployment = Deployment(urls, token)

        # Neuroflash on both replicas at once: the token is fetched once, by whichever asks first.
        async def neuroflash_session(replica: int) -> None:
            async with deployment.client(replica) as client:
                assert data(await client.call_tool("check_quota", {}))["can_generate"] is True
                assert data(await client.call_tool("list_models", {}))["models"]

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for session in range(6):
                    tg.start_soon(neuroflash_session, session % 2)

        # More snapshots than the hourly window holds, spread over both replicas: each refuses its share of
        # the surplus before sending, because both count against the one window in Valkey.
        calls = WINDOW_LIMIT + 10
        hour = int(time.time() // 3600)
        saved: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []

        async def snapshot_session(replica: int, numbers: range) -> None:
            async with deployment.client(replica) as client:
                for n in numbers:
                    arguments = {"name": f"note {n}", "core": f"Shared budget note {n}.", "max_wait_s": 5}
                    result = await client.call_tool("snapshot", arguments)
                    if result.is_error:
                        refused.append(error(result))
                    else:
                        saved.append(data(result))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for worker in range(8):
                    tg.start_soon(snapshot_session, worker % 2, range(worker, calls, 8))
        same_window = int(time.time() // 3600) == hour

        assert len(saved) + len(refused) == calls
        assert {e["code"] for e in refused} <= {"rate_limited"}, refused
        if same_window:  # a window that rolled over mid-test lets the surplus through, still without a 429
            assert len(saved) == WINDOW_LIMIT
        assert await deployment.metric("flashsnap_upstream_429_total") == 0
        assert await deployment.metric("flashsnap_token_requests_total", outcome="ok") == 1
        sent = await deployment.metric("flashsnap_upstream_requests_total", service="neuralsnap", method="POST")
        assert sent == len(saved)  # every send paid for a snapshot: none wasted
        assert await deployment.metric("flashsnap_tool_calls_total", tool="snapshot") == calls
        for replica in (0, 1):  # both served their share
            assert await deployment.metric("flashsnap_tool_calls_total", replica, tool="snapshot") == calls // 2

        # The upstream's own books, in the world the emulators share: one token issued, every snapshot stored.
        books = podman("exec", container("flashsnap-1"), "python3", "-c", WORLD_QUERY).split()
        assert books == ["1", str(len(saved))]

        # The audit volume: a file per replica, a record per call (12 neuroflash calls, every snapshot call).
        files = podman("exec", container("flashsnap-1"), "sh", "-c", "ls /var/log/flashsnap-mcp/*.jsonl").split()
        assert len(files) == 2, files
        lines = podman("exec", container("flashsnap-1"), "sh", "-c", "cat /var/log/flashsnap-mcp/*.jsonl")
        assert len(lines.splitlines()) == 12 + calls
        for file in files:  # the other replica checks each (one key, from deploy/.env); podman() wants exit 0
            podman("exec", container("flashsnap-2"), "flashsnap-mcp", "audit", "verify", file)


WORLD_QUERY = """
import sqlite3
db = sqlite3.connect("/var/lib/flashsnap-mcp/sandbox-world-v1.sqlite3")
print(*(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("tokens", "snapshots")))
"""
