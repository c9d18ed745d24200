"""This server as an OAuth 2.1 protected resource: its RFC 9728 metadata, and the 401 that points clients to it.

The SDK's own wiring lists only the scopes every call requires (and refuses tokens lacking any of them); this
one lists all four and requires none, so a token with fewer scopes still reaches the per-tool check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from mcp.server.auth.provider import TokenVerifier
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth import scopes

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def metadata_path(public_url: str) -> str:
    """RFC 9728 §3.1: the well-known name goes between the host and the resource's path."""
    return WELL_KNOWN + urlsplit(public_url).path.rstrip("/")


def metadata_url(public_url: str) -> str:
    parts = urlsplit(public_url)
    return urlunsplit((parts.scheme, parts.netloc, metadata_path(public_url), "", ""))


def metadata(public_url: str, issuer: str) -> dict[str, object]:
    """The protected resource metadata document: this resource, its one authorization server, every scope."""
    document = ProtectedResourceMetadata(
        resource=AnyHttpUrl(public_url),
        authorization_servers=[AnyHttpUrl(issuer)],
        scopes_supported=list(scopes.ALL),
        bearer_methods_supported=["header"],
        resource_name="flashsnap-mcp",
    )
    # The configured strings as they are: a client compares `resource` with the URL it was given (RFC 9728 §3.3).
    return {**document.model_dump(mode="json", exclude_none=True), "resource": public_url,
            "authorization_servers": [issuer]}  # fmt: skip


def challenge(public_url: str, error: str | None = None) -> str:
    """The `WWW-Authenticate` value of a 401: where the metadata is, and the scopes a tool call may need."""
    parts = [f'resource_metadata="{metadata_url(public_url)}"', f'scope="{" ".join(scopes.CALLING)}"']
    if error is not None:
        parts.insert(0, f'error="{error}"')
    return "Bearer " + ", ".join(parts)


class RequireToken:
    """Every request but the open paths carries a good token, or gets a 401 that says how to get one (RFC 6750).

    No scope is required here: which scope a call needs depends on the call, which the per-tool check judges.
    """

    def __init__(
        self, app: ASGIApp, *, public_url: str, open_paths: frozenset[str], refused: Callable[[Scope], None]
    ) -> None:
        self.app = app
        self._public_url = public_url
        self._open = open_paths
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._open:
            await self.app(scope, receive, send)
            return
        if isinstance(scope.get("user"), AuthenticatedUser):
            await self.app(scope, receive, send)
            return
        # A token was sent and refused: `invalid_token`; none at all: no error code (RFC 6750 §3.1).
        sent = "authorization" in HTTPConnection(scope).headers
        self._refused(scope)  # the audit log's record of a presented token refused (none sent: nothing written)
        body = {"error": "invalid_token", "error_description": "a valid access token is required"}
        answer = JSONResponse(
            body if sent else {"error": "unauthorized", "error_description": "an access token is required"},
            status_code=401,
            headers={"WWW-Authenticate": challenge(self._public_url, "invalid_token" if sent else None)},
        )
        await answer(scope, receive, send)


class ResourceMetadata:
    """Answers GET on the metadata path (without a token, as RFC 9728 wants); everything else passes on."""

    def __init__(self, app: ASGIApp, *, public_url: str, issuer: str) -> None:
        self.app = app
        self._path = metadata_path(public_url)
        self._body = json.dumps(metadata(public_url, issuer)).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == self._path:
            if scope.get("method") not in ("GET", "HEAD"):
                await JSONResponse({"error": "method not allowed"}, status_code=405, headers={"Allow": "GET"})(
                    scope, receive, send
                )
                return
            answer = Response(self._body, media_type="application/json", headers={"Cache-Control": "max-age=3600"})
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _nobody(scope: Scope) -> None:
    return None


def protected(
    app: ASGIApp,
    verifier: TokenVerifier,
    *,
    public_url: str,
    issuer: str,
    open_paths: frozenset[str],
    refused: Callable[[Scope], None] = _nobody,
) -> ASGIApp:
    """`app` behind OAuth: the metadata document, the SDK's bearer backend (the token's principal then owns the
    sessions it opens) and its `get_access_token()` context, and the 401 for a request without a good token."""
    required = RequireToken(
        app, public_url=public_url, open_paths=open_paths | {metadata_path(public_url)}, refused=refused
    )
    # The backend's own resource check stays off: the verifier already checked the audience (FLASHSNAP_OAUTH_AUDIENCE
    # may name something other than the public URL, as Entra's client ids do).
    authenticated = AuthenticationMiddleware(AuthContextMiddleware(required), backend=BearerAuthBackend(verifier))
    return ResourceMetadata(authenticated, public_url=public_url, issuer=issuer)
