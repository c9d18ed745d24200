"""A real OAuth 2.1 authorization server for the tests (panva's oidc-provider, tests/node/authorization_server.mjs),
and the scripted browser that logs in and consents on it."""

from __future__ import annotations

import json
import subprocess
from typing import Self
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2

from tests.npm import NODE, NODE_DIR, node_modules

CLIENT_SECRET = "a-client-secret-for-tests-only"
SCOPES = "flashsnap:read flashsnap:write flashsnap:spend"


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
        line = self._process.stdout.readline()  # it prints its issuer once it listens
        assert line, "the authorization server did not start"
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


class Browser:
    """The user's browser for an authorization-code flow: follows the authorization URL through the server's login
    and consent (which the test server answers for the user) until it is sent to `redirect_uri`, and keeps the code.
    """

    def __init__(self, redirect_uri: str) -> None:
        self._redirect_uri = redirect_uri
        self.visits = 0
        self.codes: list[tuple[str, str | None]] = []

    async def open(self, authorization_url: str) -> None:
        """Where the SDK's `redirect_handler` sends the user."""
        self.visits += 1
        url = authorization_url
        async with httpx2.AsyncClient(timeout=30) as http:  # its own cookie jar: the server's session
            for _ in range(20):
                if url.startswith(self._redirect_uri):
                    query = parse_qs(urlsplit(url).query)
                    assert "code" in query, query
                    self.codes.append((query["code"][0], query.get("state", [None])[0]))
                    return
                answer = await http.get(url)
                assert answer.is_redirect, (answer.status_code, answer.text[:500])
                url = urljoin(url, answer.headers["location"])
        raise AssertionError("the authorization server never sent the browser back")

    async def callback(self) -> tuple[str, str | None]:
        """Where the SDK's `callback_handler` reads the code and state the redirect carried."""
        return self.codes.pop(0)
