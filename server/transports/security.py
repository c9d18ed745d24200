"""The HTTP transports' guard: Host and Origin checks against DNS rebinding, and the bearer token.

Safe by default: the server binds to loopback, where a browser page on another site must not
reach it (Host and Origin must be local names); off loopback it refuses to start without an
access token, which every request then carries. `/healthz` answers without a token.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import ConfigurationError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/healthz"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token_when_exposed(host: str, token: SecretStr | None, allowed_hosts: tuple[str, ...] = ()) -> None:
    """Refuse to serve without an access token when other machines can reach the server.

    That is a non-loopback bind, or a loopback one behind a reverse proxy (`FLASHSNAP_ALLOWED_HOSTS`).

    Raises:
        ConfigurationError: such a bind without FLASHSNAP_HTTP_TOKEN.
    """
    if token is not None:
        return
    if not is_loopback(host):
        raise ConfigurationError(
            f"refusing to listen on {host}: it is reachable from other machines and no access token is set. "
            "Set FLASHSNAP_HTTP_TOKEN (16+ characters), or bind to 127.0.0.1."
        )
    if allowed_hosts:
        raise ConfigurationError(
            "refusing to serve FLASHSNAP_ALLOWED_HOSTS without an access token: a reverse proxy exposes the "
            "server to other machines. Set FLASHSNAP_HTTP_TOKEN (16+ characters)."
        )


class HTTPGuard:
    """ASGI middleware in front of every MCP endpoint."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        bind_host: str,
        token: SecretStr | None,
        allowed_origins: tuple[str, ...] = (),
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self._check_host = is_loopback(bind_host)  # off loopback the token stands in for the Host check
        self._token = token.get_secret_value().encode() if token is not None else None
        self._origins = frozenset(allowed_origins)
        self._hosts = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no MCP transport here uses one: refused, not let through unchecked
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(headers, scope.get("path", ""))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers, path: str) -> PlainTextResponse | None:
        if self._check_host and not self._host_allowed(headers.get("host", "")):
            return PlainTextResponse("Invalid Host header", status_code=421)
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin):
            return PlainTextResponse("Origin not allowed", status_code=403)
        if self._token is not None and path not in OPEN_PATHS:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
                return PlainTextResponse(
                    "Missing or invalid access token",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="flashsnap-mcp"'},
                )
        return None

    def _host_allowed(self, host: str) -> bool:
        name = urlsplit(f"//{host}").hostname or ""
        return is_loopback(name) or name.lower() in self._hosts

    def _origin_allowed(self, origin: str) -> bool:
        if origin.rstrip("/") in self._origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and is_loopback(parts.hostname or "")
