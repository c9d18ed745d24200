"""Who is calling, resolved once per request when the bearer token is verified, then read from the SDK's context.

A mode's verifier (named tokens, OAuth) says whose token it is; `Identified` wraps it and settles, against the
team file in use, the principal's name, its policy (the scopes the team file gives it) and the scopes it holds
now (its token's ∩ its policy), and returns them in a `Caller` token. The SDK keeps that token in its one
context variable (`get_access_token()`), so transports, the tool filter and consent read the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier

from server.auth.team import NO_CAPS, OTHER, Caps, Team

TEAM_ISSUER = "flashsnap-mcp:team"  # the `iss` of a named token: the team file vouches for it


class Caller(AccessToken):
    """An access token with what this server settled about its bearer (never shown to a client)."""

    principal: str  # the team file's name, else the token's `iss` + `sub` (or client id)
    label: str  # the name for metrics and status: the team file's, else "other"
    policy: frozenset[str]  # the scopes the team file gives it: what tools/list shows
    confirm_words: int | None = None  # its own FLASHSNAP_CONFIRM_WORDS; None: the server's
    confirm_delete: bool | None = None  # its own FLASHSNAP_CONFIRM_DELETE; None: the server's
    account: str | None = None  # the team file's upstream account its calls use; None: the default account
    weight: float = 1.0  # the team file's `weight`: its share at a shared gate and of scarce words
    caps: Caps = NO_CAPS  # its budgets on the shared stocks (server/auth/budgets.py)

    @property
    def held(self) -> frozenset[str]:
        """The scopes this request may use: its token's, narrowed by its policy (`scopes` holds them)."""
        return frozenset(self.scopes)


def identify(token: AccessToken, team: Team, *, groups_claim: str = "groups") -> Caller:
    """What the team file says of `token`'s bearer: a named token by its name, an OAuth token by its claims."""
    claims = dict(token.claims or {})
    if claims.get("iss") == TEAM_ISSUER:
        entry = team.by_name(token.client_id)
    else:
        claims.setdefault("client_id", token.client_id)
        if token.subject is not None:
            claims.setdefault("sub", token.subject)
        entry = team.matching(claims, groups_claim)
    if entry is not None:
        name, label, policy = entry.name, entry.name, entry.policy
        confirm_words, confirm_delete = entry.confirm_words, entry.confirm_delete
        account, weight, caps = entry.account, entry.weight, entry.caps
    else:
        account, weight, caps = None, team.default_weight, team.default_caps
        name = f"{claims.get('iss', '')} {token.subject or token.client_id}".strip()
        label, policy = OTHER, team.default_policy
        confirm_words, confirm_delete = team.default_confirm_words, team.default_confirm_delete
    return Caller(
        **token.model_dump(exclude={"scopes"}),
        scopes=sorted(set(token.scopes) & policy),
        principal=name,
        label=label,
        policy=policy,
        confirm_words=confirm_words,
        confirm_delete=confirm_delete,
        account=account,
        weight=weight,
        caps=caps,
    )


class Identified:
    """A `TokenVerifier`: the mode's own verifier, then `identify` against the team file in use at that moment."""

    def __init__(self, verifier: TokenVerifier, team: Callable[[], Team], *, groups_claim: str = "groups") -> None:
        self._verifier = verifier
        self._team = team
        self._groups_claim = groups_claim

    async def verify_token(self, token: str) -> AccessToken | None:
        verified = await self._verifier.verify_token(token)
        if verified is None:
            return None
        return identify(verified, self._team(), groups_claim=self._groups_claim)


def current() -> Caller | None:
    """The caller of the request running now, as `Identified` settled it; None without one (stdio, `none`,
    the shared `token` mode), where everything is allowed as before teams existed."""
    token: Any = get_access_token()
    return token if isinstance(token, Caller) else None


def label() -> str | None:
    """The principal's name for metrics and status (bounded: the team file's names, else "other"); None
    without a caller."""
    caller = current()
    return caller.label if caller is not None else None
