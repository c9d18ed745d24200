"""Slow HTTP clients cannot hold the server's connections: headers and bodies must arrive in time.

A real `flashsnap-mcp` process, as users run it (uvicorn's protocol is part of what is tested), and raw sockets.
"""

from __future__ import annotations

import anyio
import pytest

from tests.servers import http_replica

ENV = {"FLASHSNAP_HTTP_READ_TIMEOUT_S": "1"}


async def _until_closed(stream: anyio.abc.ByteStream) -> bytes:
    """What the server sends before it closes the connection."""
    received = b""
    while True:
        try:
            received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return received


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n", b""),  # headers that never end
        (
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{"jsonrpc"',
            b"408",  # a body that never ends
        ),
    ],
)
async def test_a_client_too_slow_to_send_its_request_is_disconnected(sent: bytes, answer: bytes) -> None:
    async with http_replica(ENV, "--sandbox") as base:
        port = int(base.rsplit(":", 1)[1])
        # Many slow clients at once: each is dropped, and a well-behaved one is served meanwhile.
        with anyio.fail_after(30):
            streams = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(5)]
            for stream in streams:
                await stream.send(sent)
            for stream in streams:
                received = await _until_closed(stream)
                assert received.split(b"\r\n", 1)[0].endswith(answer) or answer in received[:20]
                await stream.aclose()
