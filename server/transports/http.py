"""The HTTP transports: Streamable HTTP at /mcp and the legacy HTTP+SSE transport at /sse, one runtime for all."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.transport_security import RequestBodyLimitMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from server import __version__, sdk_seams
from server.app import create_app
from server.auth import modes
from server.auth.reloading import reload_on_hangup
from server.auth.resource import protected
from server.clock import Clock, SystemClock
from server.config import Settings
from server.observe.audit import AuditLog
from server.observe.metrics import NO_METRICS, Metrics, content_type
from server.runtime import Runtime, open_runtime
from server.transports.accept import LenientAccept
from server.transports.batches import http_batches
from server.transports.draining import Draining
from server.transports.health import healthz
from server.transports.identity import ScopeCheck, authenticate, token_refused
from server.transports.jsonrpc_guard import GuardedHTTP
from server.transports.security import OPEN_PATHS, HTTPGuard, require_token_when_exposed
from server.transports.sessions import evict_oldest_idle
from server.upstream.accounts import has_default

log = logging.getLogger(__name__)

# The guard checks Host and Origin for every path; the SDK's own copy of that check stays off.
_SDK_CHECKS_OFF = TransportSecuritySettings(enable_dns_rebinding_protection=False)


def build_http_app(settings: Settings, *, clock: Clock | None = None) -> ASGIApp:
    """The whole HTTP server as one ASGI app: the guard, /healthz, and the transport's endpoints.

    Raises:
        ConfigurationError: the auth mode's settings do not fit (server/auth/modes.py), the team file is bad, or
            the server would be reachable from other machines with no access token.
    """
    chosen = modes.mode(settings)
    team = modes.open_team(settings, clock or SystemClock())
    verifier = modes.verifier_for(settings, team, clock or SystemClock())
    if verifier is None:  # tokens and oauth modes refuse every request without a principal's token
        require_token_when_exposed(settings.host, settings.http_token, settings.allowed_hosts)
    if chosen == "none":
        log.warning(modes.NONE_WARNING)
    runtime: list[Runtime] = []

    def audit() -> AuditLog | None:  # the audit log of the runtime the lifespan opened (refusals are written there)
        return runtime[0].audit if runtime else None

    bus = None
    if settings.store == "redis" and settings.redis_url is not None:
        from server.state.bus import RedisBus  # redis-py costs ~65 ms to import: only when it is used

        # Replicas on one Redis share change notices too: a listener here hears a snapshot made through another.
        bus = RedisBus(settings.redis_url.get_secret_value(), prefix=settings.redis_prefix)
    mcp = create_app(settings, clock=clock, shared=lambda: runtime[0], bus=bus)
    if bus is not None:
        bus.from_elsewhere(mcp.notices.heard_elsewhere, wanted=mcp.notices.announces)
    if settings.transport == "sse":
        transport = mcp.sse_app(
            sse_path="/sse",
            message_path="/messages/",
            max_request_body_size=settings.max_body_bytes,
            transport_security=_SDK_CHECKS_OFF,
            host=settings.host,
        )
    else:
        transport = mcp.streamable_http_app(
            streamable_http_path="/mcp",
            # Stateless: no session lives in this process, so any replica or worker serves any request.
            stateless_http=settings.stateless,
            max_request_body_size=settings.max_body_bytes,
            session_idle_timeout=settings.session_idle_s,
            max_sessions=settings.max_sessions,
            transport_security=_SDK_CHECKS_OFF,
            host=settings.host,
        )
        evict_oldest_idle(mcp.session_manager, per_principal=settings.max_sessions_per_principal)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # One runtime for the process: every session shares its token manager and gates.
        async with (
            open_runtime(settings, clock) as opened,
            bus.running() if bus else contextlib.nullcontext(),
            reload_on_hangup(team),
        ):
            runtime.append(opened)  # /healthz says ok from here: the bus hears the other replicas by now
            async with transport.router.lifespan_context(transport):
                log.info("flashsnap-mcp %s serving %s on http://%s:%s", __version__, settings.transport,
                         settings.host, settings.port)  # fmt: skip
                yield
            log.info("shutting down: upstream clients closed")

    async def metrics(_: Request) -> Response:
        # Behind the guard like /mcp: with FLASHSNAP_HTTP_TOKEN set, scrapers send the bearer token too.
        observer = runtime[0].metrics if runtime else None
        if not isinstance(observer, Metrics):
            return Response("starting\n", status_code=503, media_type="text/plain")
        return Response(observer.exposition(), media_type=content_type())

    app = Starlette(
        routes=[Route("/healthz", healthz(settings, runtime)), Route("/metrics", metrics), Mount("/", transport)],
        lifespan=lifespan,
    )
    # The guard is outermost: a client without the token gets 401 before its body is read.
    # Then the body: whole, in time and within its size, and well-formed JSON-RPC, before the SDK reads it.
    inner: ASGIApp = RequestBodyLimitMiddleware(app, settings.max_body_bytes)
    if settings.transport == "streamable-http":
        inner = LenientAccept(inner, path="/mcp")  # JSON-only, stream-only and Accept-less clients are answered
    if verifier is not None:
        # 403 for a call whose scope the principal lacks, counted in /metrics, or that no account would serve
        current = modes.team_of(team)
        inner = ScopeCheck(inner, mcp.tool_scopes, lambda: runtime[0].metrics if runtime else NO_METRICS, audit,
                           unrouted=lambda: bool(current().accounts) and not has_default(settings))  # fmt: skip
    guarded: ASGIApp = GuardedHTTP(
        # Knows which requests are unanswered, for a shutdown to wait on; then ends the listen streams.
        Draining(inner, calls=mcp.in_flight, close_streams=lambda: sdk_seams.close_listen_streams(mcp)),
        read_timeout_s=settings.http_read_timeout_s,
        max_body_bytes=settings.max_body_bytes,
        batches=http_batches if settings.transport == "streamable-http" else None,
    )
    if chosen == "oauth" and verifier is not None and settings.oauth_issuer and settings.public_url:
        # The RFC 9728 document, and a 401 that points to it, before the body is read.
        guarded = protected(guarded, verifier, public_url=settings.public_url, issuer=settings.oauth_issuer,
                            open_paths=OPEN_PATHS, refused=lambda scope: token_refused(audit, scope))  # fmt: skip
    elif verifier is not None:
        guarded = authenticate(guarded, verifier, audit)  # 401 without a principal's token, before the body is read
    return HTTPGuard(
        guarded,
        bind_host=settings.host,
        token=settings.http_token,
        allowed_origins=settings.allowed_origins,
        allowed_hosts=settings.allowed_hosts,
    )
