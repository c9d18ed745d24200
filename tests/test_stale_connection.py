"""A pooled connection that fails before the request is written is "not sent": retried, never "maybe processed"."""

from __future__ import annotations

import os
import socket
from typing import Any

import anyio

from server.clock import FakeClock
from server.config import Settings
from server.neuralsnap.wire import SnapshotFields
from server.runtime import open_runtime
from server.sandbox import Emulator, EmulatorState


def _pooled_sockets(client: Any) -> list[socket.socket]:
    """The sockets of the idle connections in a client's pool (httpx2 -> scheduler -> httpcore2)."""
    pool = client._http._transport._inner._pool
    return [c._connection._network_stream.get_extra_info("socket") for c in pool._connections]


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    return near, far


async def test_a_snapshot_on_a_dead_pooled_connection_is_sent_again_once(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    settings = Settings.from_env(emulator.environment())
    async with open_runtime(settings, clock) as runtime:
        neuralsnap = runtime.neuralsnap().client
        with anyio.fail_after(30):
            await neuralsnap.create(SnapshotFields(name="first", core="c"))
            # The upstream's side of the kept-alive connection goes away in the instant of reuse: the pool still
            # sees an idle, unreadable socket, and writing the request into it fails before one byte arrives.
            (pooled,) = _pooled_sockets(neuralsnap)
            dead, silent = _tcp_pair()
            dead.shutdown(socket.SHUT_WR)
            os.dup2(dead.fileno(), pooled.fileno())
            try:
                created = await neuralsnap.create(SnapshotFields(name="second", core="c"))
            finally:
                dead.close()
                silent.close()
    assert created.name == "second"
    assert state.count("snapshot_create") == 2  # each snapshot reached the upstream exactly once
    assert sorted(s["name"] for s in state.snapshots.values()) == ["first", "second"]
