"""JWT access tokens (RFC 9068) checked against the issuer's keys: the SDK's `TokenVerifier` for OAuth mode."""

from __future__ import annotations

import logging
import math
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken

from server.auth.issuer import Issuer
from server.clock import Clock
from server.config import Settings

log = logging.getLogger(__name__)

# Public-key signatures only: `none` and the HMAC family (`HS256` signed with the public key as the secret is the
# classic confusion attack) never verify here, whatever the token's header says.
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
# Clocks of the authorization server and this one disagree a little; more than this is a token out of its time.
LEEWAY_S = 30.0
# A bearer token longer than this is not an access token (headers are bounded well below, by the server).
MAX_TOKEN_CHARS = 16_384
_AT_JWT = ("at+jwt", "application/at+jwt")  # RFC 9068 §2.1
_PLAIN_JWT = ("jwt", "application/jwt")


class OAuthAccessToken(AccessToken):
    """A verified access token: the SDK's fields, and the claims a team file matches on, read once.

    `claims` holds the whole verified payload (the SDK reads `iss` there to bind a session to its principal).
    """

    issuer: str
    groups: tuple[str, ...] = ()

    @property
    def principal(self) -> str:
        """Who the token speaks for when no team entry names it: its issuer and subject (a `sub` is unique only
        per issuer)."""
        return f"{self.issuer} {self.subject}"


class JWTVerifier:
    """Accepts a JWT access token only if this issuer signed it for this audience, and it is in its time."""

    def __init__(self, issuer: Issuer, *, audience: str, clock: Clock, groups_claim: str = "groups") -> None:
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._groups_claim = groups_claim

    async def verify_token(self, token: str) -> OAuthAccessToken | None:
        """The token's claims if it is good; None (the caller answers 401) for anything else, never an exception."""
        try:
            return await self._verify(token)
        except Exception as exc:  # a token no check foresaw must still be a 401, never a 500 for everyone
            log.warning("access token refused: unexpected %s", type(exc).__name__)
            return None

    async def _verify(self, token: str) -> OAuthAccessToken | None:
        if len(token) > MAX_TOKEN_CHARS:
            return _refused("longer than any access token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return _refused("not a JWT")
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ", "")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            return _refused("not signed with a public-key algorithm")
        if not isinstance(kid, str) or not isinstance(typ, str) or typ.lower() not in (*_AT_JWT, *_PLAIN_JWT, ""):
            return _refused("no key id, or the type of another kind of JWT")
        key = await self._issuer.key(kid, alg)
        if key is None:
            return _refused("signed with a key the issuer does not publish")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer.issuer,
                # Time is judged below, by the injected clock; these claims must be there to be judged.
                options={"require": ["iss", "aud", "exp", "sub"], "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            return _refused(type(exc).__name__)  # a bad signature, another issuer or audience, a claim missing
        if not self._in_time(claims):
            return _refused("expired, or not valid yet")
        if not _is_access_token(typ.lower(), claims):
            return _refused("not shaped like an access token (an ID token?)")
        return self._access_token(token, claims)

    def _in_time(self, claims: dict[str, Any]) -> bool:
        now = self._clock.now()
        try:
            expires = float(claims["exp"])
            not_before = float(claims.get("nbf", claims.get("iat", now)))
        except (TypeError, ValueError):
            return False
        if not (math.isfinite(expires) and math.isfinite(not_before)):
            return False
        return expires + LEEWAY_S > now >= not_before - LEEWAY_S

    def _access_token(self, token: str, claims: dict[str, Any]) -> OAuthAccessToken | None:
        subject, client = claims.get("sub"), claims.get("client_id", claims.get("azp"))
        if not isinstance(subject, str) or not subject:
            return _refused("no subject")
        groups = claims.get(self._groups_claim, ())
        return OAuthAccessToken(
            token=token,
            client_id=client if isinstance(client, str) else subject,
            scopes=scopes_of(claims),
            # The SDK's bearer backend refuses a token past `expires_at` by the wall clock, without leeway: the same
            # leeway as here, so the two agree on when a token expires.
            expires_at=int(float(claims["exp"]) + LEEWAY_S),
            resource=self._audience,
            subject=subject,
            claims=claims,
            issuer=claims["iss"],
            groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        )


def _refused(reason: str) -> OAuthAccessToken | None:
    """None, the answer to a bad token, with the reason in the debug log (never the token: it is a credential)."""
    log.debug("access token refused: %s", reason)
    return None


def scopes_of(claims: dict[str, Any]) -> list[str]:
    """The token's scopes: RFC 9068's space-separated `scope`, else `scp` (Entra's string, Okta's list)."""
    said = claims.get("scope", claims.get("scp"))
    if isinstance(said, str):
        return said.split()
    if isinstance(said, list):
        return [s for s in said if isinstance(s, str)]
    return []


def _is_access_token(typ: str, claims: dict[str, Any]) -> bool:
    """RFC 9068's `at+jwt`; or a plain JWT as Keycloak and Entra issue, shaped like an access token: a client and
    scopes, and no `nonce` (an ID token carries one; its `aud` is a client, too, which the audience check refuses)."""
    if typ in _AT_JWT:
        return True
    has_client = isinstance(claims.get("client_id", claims.get("azp")), str)
    has_scope = "scope" in claims or "scp" in claims
    return has_client and has_scope and "nonce" not in claims


def oauth_verifier(settings: Settings, clock: Clock) -> JWTVerifier | None:
    """The verifier of the configured issuer's tokens, for our audience; None when OAuth is not configured."""
    if settings.oauth_issuer is None or settings.audience is None:
        return None
    issuer = Issuer(settings.oauth_issuer, clock=clock)
    return JWTVerifier(issuer, audience=settings.audience, clock=clock, groups_claim=settings.oauth_groups_claim)
