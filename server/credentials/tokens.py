"""The neuroflash token manager: one client-credentials token, cached, renewed ahead, shared by every process.

One token serves every process that uses the same service account: the token lives in the
state store (`lease.py`), and each process keeps a copy. It is renewed around expiry in
two windows:

- advisory (default 120 s before expiry): the token still serves calls while one background
  refresh runs, in one process only;
- mandatory (default 30 s before expiry): calls wait for the new token.

(Both are capped at a quarter of the token's lifetime, for short-lived tokens.)

Renewal is single-flight across processes: one process holds a short lease and fetches, renewing
the lease while it does; the others wait for its result (a process that dies holding the lease
delays them by seconds). A failed fetch answers the calls queued behind it, in every process,
for a few seconds instead of each retrying. A 401 on an API call invalidates exactly the token
that call used, everywhere (a newer one is kept), then the call is replayed once with a fresh
token. No lock is held around an API call.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass
from types import TracebackType

import anyio
import httpx2
from anyio.abc import TaskGroup
from pydantic import BaseModel, Field, SecretStr, ValidationError

from server import known_secrets
from server.backoff import full_jitter
from server.clock import Clock
from server.credentials import lease
from server.errors import CredentialsRejected, FlashsnapError, UpstreamUnavailable
from server.httpio import upstream_text
from server.observe import tracing
from server.observe.metrics import NO_METRICS, Observer
from server.state.leases import renew_every
from server.state.memory import MemoryStore
from server.state.store import Mutation, Store

log = logging.getLogger(__name__)
# A token answer is a few KiB (a JWT and three fields); anything past this is not one, and is not read on.
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
FAILURE_MEMORY_S = lease.FAILURE_MEMORY_S  # how long a failed token request answers for the calls queued behind it
LEASE_S = lease.LEASE_S  # how long a process that died while fetching holds the others up, at most
POLL_S = 0.05  # how often a process waiting for another's fetch looks for its result


# RFC 6749 (5.1) only RECOMMENDS expires_in. Without it the token is taken for an hour: well inside the ~4 h the
# neuroflash FAQ documents, so it is renewed early rather than late, and a token that dies sooner is refused with a
# 401, which invalidates it, fetches a new one and replays the call once. An hour costs ~24 token requests a day.
DEFAULT_LIFETIME_S = 3600.0
MAX_LIFETIME_S = lease.MAX_LIFETIME_S  # a lifetime beyond a month is not believed: the default applies
# OAuth errors a token endpoint may put in its answer that say "not now" rather than "not you" (RFC 6749 4.1.2.1).
TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


class TokenResponse(BaseModel):
    """The token endpoint's 200 body, in every form RFC 6749 allows and real servers send.

    `expires_in` may be left out (only RECOMMENDED) or sent as a string ("3600"); `token_type` is
    case-insensitive ("Bearer", "bearer").
    """

    access_token: SecretStr = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: float | None = None

    def lifetime(self) -> float:
        """Seconds the token is good for: `expires_in` when it is a plausible number, else the default."""
        given = self.expires_in
        if given is None or not math.isfinite(given) or not 0 < given <= MAX_LIFETIME_S:
            return DEFAULT_LIFETIME_S
        return given


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
        store: Store | None = None,
        key: str = "token",
        advisory_s: float = 120.0,
        mandatory_s: float = 30.0,
        attempts: int = 3,
        observer: Observer = NO_METRICS,
    ) -> None:
        self._http = http
        self._observer = observer
        self._after_401 = False  # the next fetch replaces a token the upstream refused
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        known_secrets.hold(client_secret.get_secret_value())  # an identity server may echo it in an error
        self._clock = clock
        self._store: Store = store or MemoryStore(clock)
        self._key = key
        self._owner = secrets.token_hex(8)
        self._advisory_s = advisory_s
        self._mandatory_s = mandatory_s
        self._attempts = attempts
        self._token: _Token | None = None
        self._lock = anyio.Lock()
        self._background: TaskGroup | None = None
        self._refreshing = False
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

    def validity(self) -> tuple[float, float] | None:
        """(seconds left, full lifetime) of the token held now, for the setup check; None before the first one."""
        if self._token is None:
            return None
        return self._token.left(self._clock.now()), self._token.lifetime

    @staticmethod
    def _window(token: _Token, seconds: float) -> float:
        # A short-lived token must not spend its whole life "about to expire": at most a quarter of it.
        return min(seconds, token.lifetime / 4)

    async def invalidate(self, used: SecretStr) -> None:
        """Forget the token a call was refused with, here and in the store, unless a newer one replaced it."""
        value = used.get_secret_value()
        if self._token is not None and self._token.value.get_secret_value() == value:
            self._token = None
            self._after_401 = True
        await self._store.update(self._key, lambda doc: lease.forget(doc, self._clock.now(), used=value))

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
        async with self._lock:  # one flight per process; the lease makes it one across processes
            window = self._advisory_s if advisory else self._mandatory_s
            while True:
                current = self._token
                # Whoever held the lock before us may have fetched a token already: single flight.
                if current is not None and current.left(self._clock.now()) > self._window(current, window):
                    return current.value
                claim = await self._store.update(
                    self._key,
                    lambda doc: lease.claim(
                        doc, self._clock.now(), owner=self._owner, fresh_for=window, lease_s=LEASE_S
                    ),
                )
                if isinstance(claim, lease.Have):
                    known_secrets.hold(claim.token, live=True)  # another process's token: masked here too
                    self._token = _Token(SecretStr(claim.token), claim.expires_at, claim.lifetime)
                    return self._token.value
                if isinstance(claim, lease.Failed):
                    # ... or just failed to: the callers queued behind a failure share it, not each retry.
                    raise _rebuild(claim)
                if isinstance(claim, lease.Mine):
                    trigger = "background" if advisory else "after_401" if self._after_401 else "blocking"
                    self._after_401 = False
                    self._observer.token_refresh(trigger)
                    return await self._fetch_as_owner()
                if advisory and current is not None:
                    return current.value  # another process refreshes ahead; ours still serves meanwhile
                await anyio.sleep(POLL_S)  # real time: waiting for another process's fetch

    async def _fetch_as_owner(self) -> SecretStr:
        """Fetch while holding the lease (renewed as it goes), then hand the result to every process.

        Raises:
            FlashsnapError: the fetch failed (CredentialsRejected or UpstreamUnavailable); the failure is shared too.
        """
        renewal = anyio.CancelScope()
        if self._background is not None:
            self._background.start_soon(self._keep_lease, renewal)
        try:
            token = await self._fetch()
        except FlashsnapError as exc:
            failed = _describe(exc)
            self._observer.token_failure(failed.kind)
            await self._publish(
                lambda doc: lease.store_failure(
                    doc, self._clock.now(), owner=self._owner, failed=failed, memory_s=FAILURE_MEMORY_S
                )
            )
            raise
        except BaseException:
            await self._publish(lambda doc: lease.release(doc, self._clock.now(), owner=self._owner))
            raise
        finally:
            renewal.cancel()
        value, lifetime = token.value.get_secret_value(), token.lifetime
        await self._publish(
            lambda doc: lease.store_token(doc, self._clock.now(), owner=self._owner, value=value, lifetime=lifetime)
        )
        self._token = token
        return token.value

    async def _publish(self, mutate: Mutation[None]) -> None:
        # Shielded: a cancelled fetch must still free the lease for the processes waiting on it.
        with anyio.CancelScope(shield=True):
            await self._store.update(self._key, mutate)

    async def _keep_lease(self, scope: anyio.CancelScope) -> None:
        async def renew() -> None:
            await self._store.update(
                self._key, lambda doc: lease.renew(doc, self._clock.now(), owner=self._owner, lease_s=LEASE_S)
            )

        with scope:
            await renew_every(LEASE_S, renew)

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
        url = httpx2.URL(self._token_url)
        with tracing.http_span("POST", url, url.path) as span:
            try:
                token = await self._post_for_token()
            except CredentialsRejected as exc:
                self._observer.token_request("rejected")
                tracing.answered(span, exc.status or 400)
                raise
            except UpstreamUnavailable as exc:
                self._observer.token_request("unavailable")
                if exc.status is not None:
                    tracing.answered(span, exc.status)
                else:
                    tracing.failed(span, exc)
                raise
            self._observer.token_request("ok")
            tracing.answered(span, 200)
            return token

    async def _post_for_token(self) -> _Token:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
            "scope": "openid",
        }
        self.requests_sent += 1
        try:
            async with self._http.stream("POST", self._token_url, data=form) as answer:
                response = await _read_capped(answer)
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
        return self._read_token(response)

    def _read_token(self, response: httpx2.Response) -> _Token:
        """The token in a 200 answer; an OAuth error there is a rejection like a 400/401 with it.

        Raises:
            CredentialsRejected: the body is an OAuth error (`{"error": "invalid_client", …}`): final, never retried.
            UpstreamUnavailable: a transient OAuth error, or a body that holds no token.
        """
        error = _oauth_error_code(response)
        if error in TRANSIENT_OAUTH_ERRORS:
            raise UpstreamUnavailable(
                f"The neuroflash token endpoint answered with the OAuth error {error} (HTTP 200).", status=200
            )
        if error is not None:
            raise CredentialsRejected(
                f"neuroflash rejected the service account credentials (an OAuth error in an HTTP 200 answer: {error}).",
                hint="Check NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET; retrying will not help.",
                status=200,
            )
        try:
            body = TokenResponse.model_validate_json(response.content)
        except ValidationError:
            raise UpstreamUnavailable(
                "The neuroflash token endpoint sent an answer with no access token in it.", status=200
            ) from None
        if body.token_type.lower() != "bearer":
            log.warning("the neuroflash token endpoint gave a token of type %r; using it as a bearer token",
                        upstream_text(body.token_type, 32))  # fmt: skip
        lifetime = body.lifetime()
        if body.expires_in is None:
            log.info("the neuroflash token answer has no expires_in; taking it as valid for %.0f s", lifetime)
        known_secrets.hold(body.access_token.get_secret_value(), live=True)  # an upstream may quote it back
        log.info("obtained a neuroflash access token, valid for %.0f s", lifetime)
        return _Token(body.access_token, self._clock.now() + lifetime, lifetime)


async def _read_capped(answer: httpx2.Response) -> httpx2.Response:
    """The token endpoint's answer, read up to `MAX_TOKEN_ANSWER_BYTES` (decoded): a larger one is not read on.

    Raises:
        UpstreamUnavailable: the answer is larger than any token answer (a proxy's page, a fault, an attack).
    """
    declared = answer.headers.get("content-length", "")
    body = bytearray()
    if not (declared.isdigit() and int(declared) > MAX_TOKEN_ANSWER_BYTES):
        async for chunk in answer.aiter_bytes():
            body += chunk
            if len(body) > MAX_TOKEN_ANSWER_BYTES:
                break
    if len(body) > MAX_TOKEN_ANSWER_BYTES or (declared.isdigit() and int(declared) > MAX_TOKEN_ANSWER_BYTES):
        raise UpstreamUnavailable(
            f"The neuroflash token endpoint sent an answer over {MAX_TOKEN_ANSWER_BYTES // 1024} KiB, larger than "
            "any token answer; it was not read further.",
            status=answer.status_code,
        )
    # The body is decoded already: the copy carries no encoding or length of the bytes on the wire.
    headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in ("content-encoding", "content-length")]
    return httpx2.Response(answer.status_code, headers=headers, content=bytes(body), request=answer.request)


def _oauth_error_code(response: httpx2.Response) -> str | None:
    """The `error` of an OAuth error body (RFC 6749 5.2), if the body is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return upstream_text(error, 64) if isinstance(error, str) and error.strip() else None


def _oauth_error(response: httpx2.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return upstream_text(error, 64) if isinstance(error, str) and error.strip() else "no error code"


def _describe(exc: FlashsnapError) -> lease.Failed:
    """The failure as the lease stores it for the other processes: its texts masked, so no secret is stored."""
    kind = "rejected" if isinstance(exc, CredentialsRejected) else "unavailable"
    return lease.Failed(
        kind, known_secrets.mask(exc.message), known_secrets.mask(exc.hint), getattr(exc, "status", None)
    )


def _rebuild(failed: lease.Failed) -> FlashsnapError:
    """The failure another process (or this one) met, raised again for the calls that waited on it."""
    if failed.kind == "rejected":
        return CredentialsRejected(failed.message, hint=failed.hint, status=failed.status)
    return UpstreamUnavailable(failed.message, status=failed.status)
