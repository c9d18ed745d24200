"""Running the image under test with podman: names, labels and clean-up, so nothing outlives a test.

The smoke tests run only when FLASHSNAP_TEST_IMAGE names an image (scripts/image.sh sets it after
building); `make test` skips them and needs no podman. Every container carries the label
`io.flashsnap.smoke=<run>`, which the script also removes by, should a test be killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest

IMAGE = os.environ.get("FLASHSNAP_TEST_IMAGE", "")
RUN = os.environ.get("FLASHSNAP_TEST_RUN") or f"flashsnap-smoke-{os.getpid()}"
LABEL = f"io.flashsnap.smoke={RUN}"
STATE_DIR = "/var/lib/flashsnap-mcp"  # the image's FLASHSNAP_STATE_DIR
UID = 10001  # the image's user

needs_image = pytest.mark.skipif(
    not IMAGE or shutil.which("podman") is None,
    reason="FLASHSNAP_TEST_IMAGE names no image (or no podman): `make image` builds one and runs these",
)

# A read-only root file system, all capabilities dropped, no privilege gain: the state directory is
# the one writable place, a tmpfs the container's user owns (`U`; podman 4.3 has no `uid=` option).
HARDENED = (
    "--read-only",
    "--tmpfs",
    f"{STATE_DIR}:rw,U,mode=0700",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
)


def host_environment(**extra: str) -> dict[str, str]:
    """The environment for podman: this one without the server's variables (nothing leaks in by accident)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NEUROFLASH_", "NEURALSNAP_", "FLASHSNAP_"))}
    return {**base, **extra}


def podman(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a podman command that must succeed; its stdout."""
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env or host_environment()
    )
    assert done.returncode == 0, f"podman {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def run_in_image(*command: str, entrypoint: str, flags: tuple[str, ...] = ()) -> str:
    """A one-off container of the image: `command` run by `entrypoint`, no network; its stdout."""
    return podman("run", "--rm", "--network", "none", "--label", LABEL, *flags, "--entrypoint", entrypoint, IMAGE,
                  *command)  # fmt: skip


def inspect(name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman("container", "inspect", name))
    return found[0]


def logs(name: str) -> str:
    done = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout + done.stderr


async def wait_exited(name: str, within_s: float = 30) -> dict[str, Any]:
    """The container's state once it has exited (polled, bounded)."""
    with anyio.fail_after(within_s):
        while True:
            state: dict[str, Any] = inspect(name)["State"]
            if state["Status"] in ("exited", "stopped"):
                return state
            await anyio.sleep(0.1)


async def wait_healthy(base_url: str, name: str, token: str, within_s: float = 60) -> dict[str, Any]:
    """GET /healthz with the bearer token (its details are for the operator) until it answers 200 (polled,
    bounded); fails at once if the container exits."""
    with anyio.fail_after(within_s):
        async with httpx2.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {token}"}) as http:
            while True:
                with contextlib.suppress(httpx2.TransportError):
                    answer = await http.get(f"{base_url}/healthz")
                    if answer.status_code == 200:
                        health: dict[str, Any] = answer.json()
                        return health
                state = inspect(name)["State"]
                assert state["Status"] == "running", f"{name} is {state['Status']}:\n{logs(name)[-3000:]}"
                await anyio.sleep(0.1)


@contextlib.contextmanager
def removed_after(name: str) -> Iterator[str]:
    """The container `name`, removed (if it exists) when the block ends, however it ends."""
    try:
        yield name
    finally:
        subprocess.run(["podman", "rm", "-f", "-v", "-t", "0", name], capture_output=True, timeout=60, check=False)
