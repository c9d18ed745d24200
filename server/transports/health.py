"""/healthz: whether the process is alive for anyone; how it is set up only for a holder of the access token.

Anyone who can reach the port may ask /healthz (balancers and probes carry no credentials), so its open answer
names nothing about the machine: no state file path, no Redis host, no version or credentials configured. The
details are for the operator: with FLASHSNAP_HTTP_TOKEN set, a request carrying it gets them; without a token
they stay in `flashsnap-mcp status`, which reads the same store.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from server import __version__
from server.config import Settings
from server.runtime import Runtime
from server.state.opening import health


def healthz(settings: Settings, runtime: Sequence[Runtime]) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The /healthz endpoint of a server run with `settings`; `runtime` holds the runtime once the lifespan opened
    it (empty before: 503 "starting")."""
    token = settings.http_token.get_secret_value().encode() if settings.http_token is not None else None

    async def endpoint(request: Request) -> JSONResponse:
        # No upstream call, ever: a probe every second must cost the budgets nothing.
        ready = bool(runtime)
        state = (await health(runtime[0].store)) if ready else None
        status = "starting" if state is None else ("degraded" if state.degraded else "ok")
        body: dict[str, Any] = {"status": status}
        if token is not None and _carries(request, token):
            body |= {
                "version": __version__,
                "transport": settings.transport,
                "stateless": settings.stateless if settings.transport == "streamable-http" else False,
                "sandbox": settings.sandbox,
                "neuroflash": settings.neuroflash_configured,
                "neuralsnap": settings.neuralsnap_api_key is not None,
                "state": state.as_dict() if state is not None else None,
            }
        # Degraded still serves (with this process's own state), so a balancer keeps it in rotation.
        return JSONResponse(body, status_code=200 if ready else 503)

    return endpoint


def _carries(request: Request, token: bytes) -> bool:
    """Whether the request carries the access token (compared in constant time, as the guard compares it)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)
