"""The `httpx2.Auth` flows of both upstreams: neuroflash's bearer token, NeuralSnap's API key.

Auth runs above the scheduling transport (as httpx layers it), so every send a flow makes,
the replay after a 401 included, passes the credential's gate.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx2
from pydantic import SecretStr

from server.credentials.tokens import TokenManager


class BearerAuth(httpx2.Auth):
    """Puts the manager's token on each request; on a 401, invalidates that token and replays once."""

    def __init__(self, tokens: TokenManager) -> None:
        self._tokens = tokens

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send `request` with a valid token; after a 401, once more with a fresh one.

        Raises:
            CredentialsRejected: the token endpoint refused the service account.
            UpstreamUnavailable: no token could be had (the endpoint is down or answered nonsense).
        """
        token = await self._tokens.token()
        request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        response = yield request
        if response.status_code == 401:
            await self._tokens.invalidate(token)
            token = await self._tokens.token()
            request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
            yield request


class ApiKeyAuth(httpx2.Auth):
    """NeuralSnap's bearer API key, kept out of the client's default headers (and so out of its repr)."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Send `request` with the key; a 401 is final (a key does not refresh)."""
        request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        yield request
