"""Who may call over HTTP (`FLASHSNAP_AUTH`): the mode, the settings each needs, and the verifier it runs.

| mode | needs | principal |
|---|---|---|
| unset | - | `token` when FLASHSNAP_HTTP_TOKEN is set, else `none` |
| `none` | a loopback bind | one anonymous principal (every local user can call) |
| `token` | FLASHSNAP_HTTP_TOKEN | one shared principal |
| `tokens` | FLASHSNAP_TEAM_FILE | the team file entry whose `token_sha256` matches |
| `oauth` | FLASHSNAP_OAUTH_ISSUER, FLASHSNAP_PUBLIC_URL (team file optional) | the matching entry, else `iss` + `sub` |

Any other combination stops the start, saying what to change. stdio has no modes: its principal is the local user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from mcp.server.auth.provider import TokenVerifier

from server.auth.callers import Identified
from server.auth.jwt import oauth_verifier
from server.auth.reloading import TeamFile
from server.auth.team import NO_TEAM, Team
from server.auth.tokens import NamedTokens
from server.clock import Clock
from server.config import Settings
from server.errors import ConfigurationError

Mode = Literal["none", "token", "tokens", "oauth"]
# Modes where each request names its principal: the SDK's bearer middleware runs, and scopes are enforced.
VERIFIED: frozenset[Mode] = frozenset({"tokens", "oauth"})

NONE_WARNING = (
    "FLASHSNAP_AUTH=none: no access token, so every local user and program can call this server "
    "(set FLASHSNAP_HTTP_TOKEN, or FLASHSNAP_AUTH=tokens with a team file, to require one)"
)


def mode(settings: Settings) -> Mode:
    """The mode in use, checked against the settings it needs and the ones it has no use for.

    Raises:
        ConfigurationError: a combination the table above does not allow; the message says what to change.
    """
    chosen: Mode = settings.auth or ("token" if settings.http_token is not None else "none")
    given = {
        "FLASHSNAP_HTTP_TOKEN": settings.http_token is not None,
        "FLASHSNAP_TEAM_FILE": settings.team_file is not None,
        "FLASHSNAP_OAUTH_ISSUER": settings.oauth_issuer is not None,
        "FLASHSNAP_PUBLIC_URL": settings.public_url is not None,
    }
    needs, allows = _NEEDS[chosen], _ALLOWS[chosen]
    for var in needs:
        if not given[var]:
            raise ConfigurationError(f"FLASHSNAP_AUTH={chosen} needs {var}: {_FIX[var]}")
    for var, present in given.items():
        if present and var not in needs and var not in allows:
            raise ConfigurationError(f"{var} has no use with FLASHSNAP_AUTH={chosen}: {_UNUSED[chosen]}")
    return chosen


_NEEDS: dict[Mode, tuple[str, ...]] = {
    "none": (),
    "token": ("FLASHSNAP_HTTP_TOKEN",),
    "tokens": ("FLASHSNAP_TEAM_FILE",),
    "oauth": ("FLASHSNAP_OAUTH_ISSUER", "FLASHSNAP_PUBLIC_URL"),
}
_ALLOWS: dict[Mode, tuple[str, ...]] = {"none": (), "token": (), "tokens": (), "oauth": ("FLASHSNAP_TEAM_FILE",)}
_FIX = {
    "FLASHSNAP_HTTP_TOKEN": "set it (16+ characters), which every client then sends as its bearer token",
    "FLASHSNAP_TEAM_FILE": "set it to the TOML file naming the team (README, 'Team deployment')",
    "FLASHSNAP_OAUTH_ISSUER": "set it to your authorization server's issuer URL",
    "FLASHSNAP_PUBLIC_URL": "set it to this server's URL as clients reach it, e.g. https://mcp.example.com/mcp",
}
_UNUSED: dict[Mode, str] = {
    "none": "unset it, or set FLASHSNAP_AUTH to the mode that uses it (token, tokens or oauth)",
    "token": "unset it, or set FLASHSNAP_AUTH=tokens (a team file) or oauth (an identity provider) instead",
    "tokens": "unset it; in tokens mode each principal's token is in the team file",
    "oauth": "unset it; in oauth mode the identity provider issues each principal's token",
}


def open_team(settings: Settings, clock: Clock) -> TeamFile | None:
    """The team file, read and checked once (None when none is set); it reloads itself when it changes.

    Raises:
        ConfigurationError: it cannot be read or breaks a rule; the message names the file and the place.
    """
    if settings.team_file is None:
        return None
    return TeamFile(settings.team_file, clock, tokens=mode(settings) == "tokens")


def verifier_for(settings: Settings, team: TeamFile | None, clock: Clock) -> TokenVerifier | None:
    """The verifier of the mode in use, wrapped to settle the caller against the team; None for `none` and
    `token`, where the transports' guard alone decides (as before teams existed).

    Raises:
        ConfigurationError: the mode's settings are incomplete.
    """
    chosen = mode(settings)
    current = team_of(team)
    if chosen == "tokens":
        return Identified(NamedTokens(current), current)
    if chosen == "oauth" and (tokens := oauth_verifier(settings, clock)) is not None:
        return Identified(tokens, current, groups_claim=settings.oauth_groups_claim)
    return None


def team_of(team: TeamFile | None) -> Callable[[], Team]:
    """A function returning the team in use (an empty one without a file)."""
    if team is None:
        return lambda: NO_TEAM
    return lambda: team.team
