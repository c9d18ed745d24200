"""Named tokens (`FLASHSNAP_AUTH=tokens`): a bearer token is a principal's when its SHA-256 is in the team file.

The file holds hashes, never tokens; each request's token is hashed once and compared with every principal's
hash in constant time (no early exit), so neither the answer's timing nor the file reveals a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from mcp.server.auth.provider import AccessToken

from server.auth.callers import TEAM_ISSUER
from server.auth.team import Team

TOKEN_BYTES = 32  # 256 bits of randomness: `team token` prints 43 URL-safe characters


def token_sha256(token: str) -> str:
    """The lowercase hex SHA-256 of a token, as the team file's `token_sha256` holds it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and its `token_sha256`."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_sha256(token)


class NamedTokens:
    """A `TokenVerifier` over the team file in use: the principal is the entry whose hash the token has."""

    def __init__(self, team: Callable[[], Team]) -> None:
        self._team = team

    async def verify_token(self, token: str) -> AccessToken | None:
        given = token_sha256(token.strip()).encode()
        found = None
        for digest, principal in self._team().by_token_hash().items():
            if hmac.compare_digest(given, digest.encode()) and found is None:
                found = principal
        if found is None:
            return None
        # client_id, issuer and subject are what the SDK binds a session and a sealed question to.
        return AccessToken(
            token=token,
            client_id=found.name,
            subject=found.name,
            scopes=sorted(found.policy),
            claims={"iss": TEAM_ISSUER},
        )
