"""The authorization server as this resource server knows it: its metadata, then its signing keys, cached."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import jwt

from server.clock import Clock
from server.httpio import tls_context

log = logging.getLogger(__name__)

# A metadata document or a key set is a few kilobytes; more is not an authorization server's answer.
MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT_S = 10.0
# An unknown `kid` fetches the key set again at most this often: a stream of made-up kids costs the
# authorization server one request per cooldown, not one per token.
REFRESH_COOLDOWN_S = 60.0
# Keys a server retires are dropped within this long even when no unknown kid asks for a refresh.
MAX_KEYS_AGE_S = 24 * 3600.0


class IssuerUnreachable(Exception):
    """The authorization server's metadata or keys could not be read (network, status, size or shape)."""


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be, in order: RFC 8414's well-known URL (inserted before the issuer's path),
    then OpenID Connect Discovery's (appended to it), then the RFC 8414 form of OpenID's name."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(well_known: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, well_known, "", ""))

    urls = [
        at(f"/.well-known/oauth-authorization-server{path}"),
        at(f"{path}/.well-known/openid-configuration"),
        at(f"/.well-known/openid-configuration{path}"),
    ]
    return list(dict.fromkeys(urls))  # an issuer without a path has two, not three


class Issuer:
    """One authorization server's signing keys, fetched on first use and again when a token names a new one."""

    def __init__(
        self,
        issuer: str,
        *,
        clock: Clock,
        http: httpx2.AsyncClient | None = None,
        refresh_cooldown_s: float = REFRESH_COOLDOWN_S,
    ) -> None:
        self.issuer = issuer
        self._clock = clock
        self._http = http
        self._cooldown_s = refresh_cooldown_s
        self._jwks_uri: str | None = None
        self._keys: dict[str, dict[str, Any]] = {}  # kid -> its public JWK
        self._prepared_keys: dict[tuple[str, str], jwt.PyJWK | None] = {}
        self._fetched_at: float | None = None  # the last attempt, successful or not: the cooldown counts from it
        self._lock = anyio.Lock()
        self.fetches = 0  # key-set fetches, for operators' logs and the tests of the cooldown

    async def key(self, kid: str, alg: str) -> jwt.PyJWK | None:
        """The signing key named `kid`, for `alg`, from the cache or, if it is not there and the cooldown allows,
        fetched again.

        None: no such key (after one refresh), a key of another algorithm or type, or the authorization server
        could not be reached.
        """
        if kid not in self._keys or self._stale():
            async with self._lock:  # one fetch at a time; those waiting read what it found
                if (kid not in self._keys or self._stale()) and self._may_fetch():
                    self._fetched_at = self._clock.now()
                    try:
                        await self._refresh()
                    except IssuerUnreachable as exc:
                        log.warning("cannot read the signing keys of %s: %s", self.issuer, exc)
        return self._prepared(kid, alg)

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or self._clock.now() - self._fetched_at >= self._cooldown_s

    def _prepared(self, kid: str, alg: str) -> jwt.PyJWK | None:
        # A key is read once per algorithm: the JWK's own `alg`, when it names one, must be the token's.
        if (kid, alg) in self._prepared_keys:
            return self._prepared_keys[(kid, alg)]
        entry = self._keys.get(kid)
        if entry is None or entry.get("alg", alg) != alg:
            return None
        try:
            key: jwt.PyJWK | None = jwt.PyJWK(entry, algorithm=alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            key = None  # an RSA key asked to verify ES256, a curve this library lacks: no key for this token
        self._prepared_keys[(kid, alg)] = key
        return key

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock.now() - self._fetched_at > MAX_KEYS_AGE_S

    async def _refresh(self) -> None:
        if self._jwks_uri is None:
            self._jwks_uri = await self._discover()
        body = await self._get_json(self._jwks_uri)
        keys = body.get("keys")
        if not isinstance(keys, list):
            raise IssuerUnreachable(f"{self._jwks_uri} holds no key set")
        self.fetches += 1
        self._keys = _signing_keys(keys)
        self._prepared_keys = {}

    async def _discover(self) -> str:
        tried = []
        for url in metadata_urls(self.issuer):
            try:
                metadata = await self._get_json(url)
            except IssuerUnreachable as exc:
                tried.append(str(exc))
                continue
            # RFC 8414 §3.3: the document must name the very issuer asked about, or it is not that server's.
            if metadata.get("issuer") != self.issuer:
                raise IssuerUnreachable(f"{url} names issuer {str(metadata.get('issuer'))[:200]!r}")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("http", "https"):
                raise IssuerUnreachable(f"{url} names no jwks_uri")
            return jwks_uri
        raise IssuerUnreachable("no authorization server metadata: " + "; ".join(tried))

    async def _get_json(self, url: str) -> dict[str, Any]:
        client = self._http or httpx2.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False, verify=tls_context())
        try:
            # Each read within FETCH_TIMEOUT_S, and the whole answer too: a server dripping bytes holds no one long.
            with anyio.fail_after(FETCH_TIMEOUT_S):
                body = await self._read(client, url)
        except TimeoutError:
            raise IssuerUnreachable(f"{url} took longer than {FETCH_TIMEOUT_S:.0f} s") from None
        except httpx2.HTTPError as exc:
            raise IssuerUnreachable(f"{url}: {type(exc).__name__}") from None
        finally:
            if self._http is None:
                await client.aclose()
        try:
            document = json.loads(body)
        except ValueError:
            raise IssuerUnreachable(f"{url} answered no JSON") from None
        if not isinstance(document, dict):
            raise IssuerUnreachable(f"{url} answered no JSON object")
        return document

    @staticmethod
    async def _read(client: httpx2.AsyncClient, url: str) -> bytes:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise IssuerUnreachable(f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise IssuerUnreachable(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
            return bytes(body)


def _signing_keys(keys: list[Any]) -> dict[str, dict[str, Any]]:
    """The set's public signing keys that have a kid, by kid; an encryption key, a key without a kid, a shared
    secret or a private key is left out (a token naming it then fails as an unknown key)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in keys[:100]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC", "OKP") or "d" in entry:
            continue  # `oct` is a shared secret, and `d` a private key: neither has a place in a public key set
        found.setdefault(entry["kid"], entry)
    return found
