"""Who is calling, at the HTTP door (tokens and oauth modes): 401 without a principal, 403 without the call's scope.

`authenticate` puts the SDK's own bearer middleware in front of everything (so /metrics is covered too, and the
caller is known before a body is read), once per request: the SDK's session-owner binding reads the user it set.
`ScopeCheck` judges each JSON-RPC message from its body (the SDK then refuses an `Mcp-Name` header that disagrees):
a `tools/call` needs its tool's scope, resources, prompts and completions need read, /metrics needs admin. A call
without it gets HTTP 403 `insufficient_scope` naming the scope, which an OAuth client steps up from, where an
`isError` result could only be read; nothing reaches an upstream. A principal the team file routes to no account,
while no default account is configured (`unrouted`), gets HTTP 403 for every call that would reach one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from mcp.server.auth.provider import TokenVerifier
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth import scopes
from server.auth.callers import Caller
from server.observe.audit import AuditLog
from server.observe.metrics import NO_METRICS, Observer
from server.transports.jsonrpc_guard import RPC_CALL

FORBIDDEN = -32003  # a JSON-RPC error code of this server's: the caller lacks the scope the call needs
# Methods whose every call reads (resources, prompts, completions); a tool call's scope is its tool's.
READING_PREFIXES = ("resources/", "prompts/", "completion/")
PATH_SCOPES = {"/metrics": scopes.ADMIN}


def is_open(path: str) -> bool:
    """Paths anyone may fetch: the health check, and the discovery documents under /.well-known/."""
    return path == "/healthz" or path.startswith("/.well-known/")


def unauthorized(conn: HTTPConnection) -> Response:
    """The 401 of a request without a valid token (RFC 6750: no error code when none was sent)."""
    sent = conn.headers.get("authorization", "").lower().startswith("bearer ")
    challenge = 'Bearer realm="flashsnap-mcp"' + (', error="invalid_token"' if sent else "")
    return PlainTextResponse(
        "Missing or invalid access token", status_code=401, headers={"WWW-Authenticate": challenge}
    )


def _no_audit() -> AuditLog | None:
    return None


Audit = Callable[[], AuditLog | None]  # the audit log of the running server, once it is open


def token_refused(audit: Audit, scope: Scope) -> None:
    """Write the audit record of a presented token that was refused; a request with none is not written (anyone
    could fill the disk with those)."""
    log = audit()
    if log is not None and "authorization" in HTTPConnection(scope).headers:
        log.refused(None, f"{scope.get('method', '')} {scope.get('path', '')}", None, "token refused")


class _Required:
    """Every path but the open ones needs an authenticated principal."""

    def __init__(self, app: ASGIApp, audit: Audit) -> None:
        self.app = app
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and not is_open(path) and not isinstance(scope.get("user"), AuthenticatedUser):
            token_refused(self._audit, scope)
            await unauthorized(HTTPConnection(scope))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def authenticate(app: ASGIApp, verifier: TokenVerifier, audit: Audit = _no_audit) -> ASGIApp:
    """`app` behind the SDK's bearer middleware with `verifier`: the caller is in the SDK's context from here."""
    inner = AuthContextMiddleware(_Required(app, audit))
    return AuthenticationMiddleware(inner, backend=BearerAuthBackend(verifier))


def needed_scope(method: str | None, name: object, tool_scopes: Mapping[str, str]) -> str | None:
    """The scope a JSON-RPC call needs; None when any authenticated caller may send it (initialize, ping,
    tools/list, a reply, an unknown tool: the tool filter answers that one)."""
    if method == "tools/call":
        return tool_scopes.get(name) if isinstance(name, str) else None
    if method is not None and method.startswith(READING_PREFIXES):
        return scopes.READ
    return None


def insufficient_scope(needed: str, caller: Caller, msg_id: object) -> JSONResponse:
    """HTTP 403 with the step-up challenge, and the JSON-RPC error answering the request (clients that cannot
    step up read why)."""
    message = (
        f"This call needs the {needed} scope, which {caller.principal}'s access does not hold (held: "
        f"{', '.join(sorted(caller.held)) or 'none'}); nothing was done."
    )
    body = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": FORBIDDEN, "message": message, "data": {"scope": needed}}}
    # Only fixed text in the header: a principal's name (an OAuth `sub`) could carry quotes or non-Latin-1 text.
    challenge = f'Bearer error="insufficient_scope", scope="{needed}", error_description="needs {needed}"'
    return JSONResponse(body, status_code=403, headers={"WWW-Authenticate": challenge})


def no_account(caller: Caller, msg_id: object) -> JSONResponse:
    """HTTP 403 for a principal with no upstream account to spend: the JSON-RPC error says what to change."""
    message = (
        f"{caller.principal} has no upstream account: the team file gives it no `account` and the server has no "
        "default account configured; nothing was done."
    )
    body = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": FORBIDDEN, "message": message, "data": {}}}
    return JSONResponse(body, status_code=403)


def _never() -> bool:
    return False


class ScopeCheck:
    """ASGI middleware (inside the body guard, which parsed the message): 403 for a call whose scope the caller
    does not hold, or that no account of the caller's would serve (`unrouted()`: the team file has accounts and
    the environment none, so a principal without `account` has nothing to call with)."""

    def __init__(
        self,
        app: ASGIApp,
        tool_scopes: Mapping[str, str],
        observer: Callable[[], Observer] = lambda: NO_METRICS,
        audit: Audit = _no_audit,
        unrouted: Callable[[], bool] = _never,
    ) -> None:
        self.app = app
        self._tool_scopes = tool_scopes
        self._observer = observer
        self._audit = audit
        self._unrouted = unrouted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user") if scope["type"] == "http" else None
        caller = user.access_token if isinstance(user, AuthenticatedUser) else None
        if not isinstance(caller, Caller):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        needed = PATH_SCOPES.get(path)
        method, name, msg_id = f"{scope['method']} {path}", None, None
        if needed is None and scope["method"] == "POST":
            method, name, msg_id = scope.get(RPC_CALL, (None, None, None))
            needed = needed_scope(method, name, self._tool_scopes)
        if needed is not None and needed not in caller.held:
            self._observer().scope_refused(caller.label, needed)
            if (audit := self._audit()) is not None:
                tool = name if method == "tools/call" and isinstance(name, str) else None
                audit.refused(caller.principal, str(method), tool, f"needs {needed}")
            await insufficient_scope(needed, caller, msg_id)(scope, receive, send)
            return
        if needed is not None and path not in PATH_SCOPES and caller.account is None and self._unrouted():
            if (audit := self._audit()) is not None:
                tool = name if method == "tools/call" and isinstance(name, str) else None
                audit.refused(caller.principal, str(method), tool, "no account")
            await no_account(caller, msg_id)(scope, receive, send)
            return
        await self.app(scope, receive, send)
