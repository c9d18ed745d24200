"""An upstream that answers in well under a millisecond: the neuroflash token and model list, precomputed.

Run as its own process (`python bench/fast_upstream.py`), so it shares no interpreter lock with the client or the
servers; it prints its port and serves HTTP/1.1 keep-alive on loopback until killed. The emulator takes about 3 ms
per answer, which dilutes any difference between two servers; this one takes microseconds, so what a run measures
is the servers themselves.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

from server.sandbox import catalog

TOKEN = json.dumps({"access_token": "fast-token", "token_type": "Bearer", "expires_in": 14_399}).encode()
MODELS = json.dumps(
    [{**m, "description": f"{m['name']} by {m['provider']}", "available": True} for m in catalog.MODELS]
).encode()
WORKSPACES = json.dumps({"data": [{"id": catalog.MARKETING_WORKSPACE, "name": "Marketing Team"}]}).encode()


def answer(status: int, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nx-request-id: {uuid.uuid4()}\r\n\r\n"
    )
    return head.encode() + body


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            length = next((int(v) for k, _, v in (h.partition(":") for h in lines) if k.lower() == "content-length"), 0)
            if length:
                await reader.readexactly(length)
            if method == "POST" and path.endswith("/oauth/v2/token"):
                writer.write(answer(200, TOKEN))
            elif path.endswith("/model_selection/models"):
                writer.write(answer(200, MODELS))
            elif path.endswith("/workspaces"):
                writer.write(answer(200, WORKSPACES))
            else:
                writer.write(answer(404, b'{"error": "Not Found"}'))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
