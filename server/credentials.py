"""The neuroflash token manager, and the `httpx2.Auth` flow that puts its token on requests.

One `TokenManager` serves the whole process. It caches the token and renews it around
expiry in two windows:

- advisory (default 120 s before expiry): the cached token still serves calls while one
  background refresh runs;
- mandatory (default 30 s before expiry): calls wait for the new token.

(Both are capped at a quarter of the token's lifetime, for short-lived tokens.)

Renewal is single-flight: however many calls wait, one token request goes out, and a failed
one answers the calls queued behind it for a few seconds instead of each retrying. A 401 on an
API call invalidates exactly the token that call used (a newer one is kept), then the call
is replayed once with a fresh token. The lock is held around the token request only,
never around an API call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType

import anyio
import httpx2
from anyio.abc import TaskGroup
from pydantic import BaseModel, SecretStr, ValidationError

from server.backoff import full_jitter
from server.clock import Clock
from server.errors import CredentialsRejected, FlashsnapError, UpstreamUnavailable

log = logging.getLogger(__name__)
FAILURE_MEMORY_S = 5.0  # how long a failed token request answers for the calls that queued behind it


class TokenResponse(BaseModel):
    """The token endpoint's 200 body."""

    access_token: SecretStr
    token_type: str = "Bearer"
    expires_in: float


@dataclass(frozen=True)
class _Token:
    value: SecretStr
    expires_at: float
    lifetime: float

    def left(self, now: float) -> float:
        return self.expires_at - now


class TokenManager:
    """Fetches, caches and renews the client-credentials token of one service account."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        clock: Clock,
        advisory_s: float = 120.0,
        mandatory_s: float = 30.0,
        attempts: int = 3,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._advisory_s = advisory_s
        self._mandatory_s = mandatory_s
        self._attempts = attempts
        self._token: _Token | None = None
        self._lock = anyio.Lock()
        self._background: TaskGroup | None = None
        self._refreshing = False
        self._failure: tuple[float, FlashsnapError] | None = None
        self.requests_sent = 0

    async def __aenter__(self) -> TokenManager:
        self._background = anyio.create_task_group()
        await self._background.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._background is not None
        self._background.cancel_scope.cancel()
        await self._background.__aexit__(exc_type, exc, tb)
        self._background = None

    async def token(self) -> SecretStr:
        """A token that is valid now; waits for a new one only inside the mandatory window."""
        current = self._token
        now = self._clock.now()
        if current is not None and current.left(now) > self._window(current, self._mandatory_s):
            if current.left(now) <= self._window(current, self._advisory_s):
                self._refresh_in_background()
            return current.value
        return await self._refresh(advisory=False)

    @staticmethod
    def _window(token: _Token, seconds: float) -> float:
        # A short-lived token must not spend its whole life "about to expire": at most a quarter of it.
        return min(seconds, token.lifetime / 4)

    def invalidate(self, used: SecretStr) -> None:
        """Forget the token a call was refused with, unless a newer one already replaced it."""
        if self._token is not None and self._token.value.get_secret_value() == used.get_secret_value():
            self._token = None

    def _refresh_in_background(self) -> None:
        if self._refreshing or self._background is None:
            return
        self._refreshing = True
        self._background.start_soon(self._background_refresh)

    async def _background_refresh(self) -> None:
        try:
            await self._refresh(advisory=True)
        except Exception as exc:  # the cached token still serves; the mandatory window will retry
            log.warning("background token refresh failed: %s", exc)
        finally:
            self._refreshing = False

    async def _refresh(self, *, advisory: bool) -> SecretStr:
        async with self._lock:
            # Whoever held the lock before us may have fetched a token already: single flight.
            current = self._token
            now = self._clock.now()
            window = self._advisory_s if advisory else self._mandatory_s
            if current is not None and current.left(now) > self._window(current, window):
                return current.value
            # ... or just failed to: the callers queued behind a failure share it, not each retry.
            if self._failure is not None and now - self._failure[0] < FAILURE_MEMORY_S:
                raise self._failure[1]
            try:
                self._token = await self._fetch()
            except FlashsnapError as exc:
                self._failure = (self._clock.now(), exc)
                raise
            self._failure = None
            return self._token.value

    async def _fetch(self) -> _Token:
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._request_token()
            except UpstreamUnavailable:
                if attempt == self._attempts:
                    raise
                await self._clock.sleep(full_jitter(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request_token(self) -> _Token:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
            "scope": "openid",
        }
        self.requests_sent += 1
        try:
            response = await self._http.post(self._token_url, data=form)
        except httpx2.TransportError as exc:
            raise UpstreamUnavailable(
                f"The neuroflash token endpoint could not be reached ({type(exc).__name__})."
            ) from None
        if response.status_code in (400, 401):  # RFC 6749: invalid_client, unsupported_grant_type
            raise CredentialsRejected(
                "neuroflash rejected the service account credentials "
                f"(HTTP {response.status_code}, {_oauth_error(response)}).",
                hint="Check NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET; retrying will not help.",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise UpstreamUnavailable(
                f"The neuroflash token endpoint answered HTTP {response.status_code}.",
                status=response.status_code,
            )
        try:
            body = TokenResponse.model_validate_json(response.content)
        except ValidationError:
            raise UpstreamUnavailable("The neuroflash token endpoint sent a malformed answer.") from None
        log.info("obtained a neuroflash access token, valid for %.0f s", body.expires_in)
        return _Token(body.access_token, self._clock.now() + body.expires_in, body.expires_in)


def _oauth_error(response: httpx2.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error) if isinstance(error, str) else "no error code"


class BearerAuth(httpx2.Auth):
    """Puts the manager's token on each request; on a 401, invalidates it and replays once."""

    def __init__(self, tokens: TokenManager) -> None:
        self._tokens = tokens

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self._tokens.token()
        request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        response = yield request
        if response.status_code == 401:
            self._tokens.invalidate(token)
            token = await self._tokens.token()
            request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
            yield request
