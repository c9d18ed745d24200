"""A real OAuth 2.1 authorization server for the tests (panva's oidc-provider, tests/node/authorization_server.mjs),
and the scripted browser that logs in and consents on it."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthToken
from starlette.types import ASGIApp, Receive, Scope, Send

from server.clock import FakeClock
from server.sandbox import EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.sandbox.runner import Emulator, build_app
from server.transports.http import build_http_app
from tests.npm import NODE, NODE_DIR, node_modules

CLIENT_SECRET = "a-client-secret-for-tests-only"
SCOPES = "flashsnap:read flashsnap:write flashsnap:spend"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}  # fmt: skip


class AuthorizationServer:
    """`with AuthorizationServer() as auth:` then `auth.issuer`; one Node process, stopped by closing its stdin."""

    def __init__(self) -> None:
        node_modules()
        self._process = subprocess.Popen(
            [str(NODE), str(NODE_DIR / "authorization_server.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=NODE_DIR,
        )
        assert self._process.stdout is not None
        # It prints its issuer once it listens (about a second); a start that hangs fails here, not the suite.
        ready, _, _ = select.select([self._process.stdout], [], [], 60)
        line = self._process.stdout.readline() if ready else b""
        if not line:
            self.__exit__()
            raise AssertionError("the authorization server (tests/node/authorization_server.mjs) did not start")
        self.issuer: str = json.loads(line)["issuer"]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def token(self, client: str, resource: str, scope: str = SCOPES) -> str:
        """A client-credentials access token of `client` (a fixed client of the server) for `resource`."""
        answer = httpx2.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
            auth=(client, CLIENT_SECRET),
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def id_token(self) -> str:
        """An OpenID Connect ID token of the scripted user, from a code flow run here by hand: a public client
        registers itself, the browser signs in, the code (with its PKCE verifier) buys the tokens."""
        redirect = "http://127.0.0.1:1/callback"
        with httpx2.Client(timeout=30) as http:
            public = {"redirect_uris": [redirect], "token_endpoint_auth_method": "none"}
            registered = http.post(f"{self.issuer}/reg", json={**public, "grant_types": ["authorization_code"]})
            assert registered.status_code == 201, registered.text
            client_id = registered.json()["client_id"]
            verifier = secrets.token_urlsafe(48)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            query = {"client_id": client_id, "response_type": "code", "scope": "openid", "redirect_uri": redirect,
                     "code_challenge": challenge, "code_challenge_method": "S256", "nonce": "n-0S6_WzA2Mj"}  # fmt: skip
            location = str(httpx2.URL(f"{self.issuer}/auth", params=query))
            for _ in range(20):
                if location.startswith(redirect):
                    break
                location = urljoin(location, http.get(location).headers["location"])
            code = parse_qs(urlsplit(location).query)["code"][0]
            exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
            tokens = http.post(f"{self.issuer}/token", data={**exchange, "client_id": client_id,
                               "code_verifier": verifier})  # fmt: skip
        assert tokens.status_code == 200, tokens.text
        id_token: str = tokens.json()["id_token"]
        return id_token


class Browser:
    """The user's browser for an authorization-code flow: follows the authorization URL through the server's login
    and consent (which the test server answers for the user) until it is sent to `redirect_uri`, and keeps the code.
    """

    def __init__(self, redirect_uri: str) -> None:
        self._redirect_uri = redirect_uri
        self.visits = 0
        self.codes: list[AuthorizationCodeResult] = []

    async def open(self, authorization_url: str) -> None:
        """Where the SDK's `redirect_handler` sends the user."""
        self.visits += 1
        url = authorization_url
        async with httpx2.AsyncClient(timeout=30) as http:  # its own cookie jar: the server's session
            for _ in range(20):
                if url.startswith(self._redirect_uri):
                    query = parse_qs(urlsplit(url).query)
                    assert "code" in query, query
                    said = {name: values[0] for name, values in query.items() if name in ("code", "state", "iss")}
                    self.codes.append(AuthorizationCodeResult.model_validate(said))
                    return
                answer = await http.get(url)
                assert answer.is_redirect, (answer.status_code, answer.text[:500])
                url = urljoin(url, answer.headers["location"])
        raise AssertionError("the authorization server never sent the browser back")

    async def callback(self) -> AuthorizationCodeResult:
        """Where the SDK's `callback_handler` reads the code, state and issuer the redirect carried."""
        return self.codes.pop(0)


class WatchedEmulator(Emulator):
    """The emulator, noting every credential a request to it carried."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.credentials: list[str] = []
        LoopbackServer.__init__(self, self._watch(build_app(state)))

    def _watch(self, app: ASGIApp) -> ASGIApp:
        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.credentials += [v.decode() for k, v in scope["headers"] if k == b"authorization"]
            await app(scope, receive, send)

        return watched

    def foreign_credentials(self) -> list[str]:
        """Credentials the upstream saw that are not its own (the tokens it issued, the API keys it knows): any
        would be a client's token passed through."""
        own = {f"Bearer {token}" for token in self.state.issued} | {f"Bearer {key}" for key in self.state.api_keys}
        return [seen for seen in self.credentials if seen not in own]


@dataclass
class Served:
    """A flashsnap-mcp in OAuth mode over Streamable HTTP, its emulator, and the clock both keep."""

    url: str  # FLASHSNAP_PUBLIC_URL: the /mcp endpoint
    auth: AuthorizationServer
    emulator: WatchedEmulator
    clock: FakeClock

    @property
    def issuer(self) -> str:
        return self.auth.issuer

    def post(self, token: str | None, path: str = "/mcp") -> httpx2.Response:
        """An `initialize` (the request every client starts with), with `token` as its bearer token."""
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx2.post(self.url.removesuffix("/mcp") + path, json=INITIALIZE, headers=headers, timeout=30)


@contextmanager
def serving(
    auth: AuthorizationServer, *flags: str, stateless: bool = False, transport: str = "streamable-http"
) -> Iterator[Served]:
    """A fresh emulator and server trusting `auth`, at a public URL on a loopback port."""
    from tests.servers import free_port
    from tests.transports import settings  # it imports the conftest, which imports this module

    # The authorization server stamps tokens with the real time: this server's clock starts there and moves on
    # only when a test moves it.
    clock = FakeClock(start=time.time())
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with WatchedEmulator(EmulatorState(clock)) as emulator:
        config = settings(emulator, *flags, transport=transport, auth="oauth", oauth_issuer=auth.issuer, public_url=url,
                          http_stateless=stateless)  # fmt: skip
        with LoopbackServer(build_http_app(config, clock=clock), port=port, lifespan="on"):
            yield Served(url, auth, emulator, clock)


class Memory:
    """The SDK client's token storage, in memory: the test reads the token the client was issued."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info
