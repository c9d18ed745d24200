"""Who may call over HTTP, as `check` reports it: the auth mode in use, a warning for `none`, what to fix."""

from __future__ import annotations

from typing import Literal

from server.auth import modes
from server.clock import SystemClock
from server.config import Settings
from server.errors import ConfigurationError

Line = tuple[Literal["ok", "warn", "fail"], str, str | None]  # status, detail, fix


def access(settings: Settings) -> Line | None:
    """`check`'s line on the HTTP auth mode; None over stdio, whose caller is the local user."""
    if settings.transport == "stdio":
        return None
    try:
        chosen = modes.mode(settings)
        team = modes.open_team(settings, SystemClock())
        modes.verifier_for(settings, team, SystemClock())
    except ConfigurationError as exc:
        return "fail", exc.message, "Fix the variables or the team file named above."
    if chosen == "none":
        return "warn", modes.NONE_WARNING, "Set FLASHSNAP_HTTP_TOKEN, or FLASHSNAP_AUTH=tokens with a team file."
    if chosen == "token":
        return "ok", "FLASHSNAP_AUTH=token: every client shares one bearer token (one principal)", None
    names = ", ".join(sorted(team.team.names)) if team is not None else ""
    if chosen == "oauth":
        issued = f"FLASHSNAP_AUTH=oauth: access tokens of {settings.oauth_issuer} for {settings.audience}"
        return "ok", f"{issued}; principals named in the team file: {names or '(none)'}", None
    return "ok", f"FLASHSNAP_AUTH={chosen}: principals {names or '(none named)'}", None
