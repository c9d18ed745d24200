"""What a slow or greedy HTTP client may hold: headers and bodies must arrive in time, connections are capped.

uvicorn bounds the idle time between requests, but not how long a request's headers may trickle in;
the protocol below closes a connection whose headers are not complete in time, and the body read
is bounded in `server.transports.jsonrpc_guard.GuardedHTTP`.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from server.config import Settings


class HeaderDeadlineProtocol(H11Protocol):
    """h11 as uvicorn speaks it, with a deadline for each request's headers (set per server by `protocol_for`)."""

    header_timeout_s: float | None = None  # None: from the environment (workers build theirs from it)
    _timer: asyncio.TimerHandle | None = None
    _scope_when_armed: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if getattr(self, "scope", None) is not self._scope_when_armed:
            self._disarm()  # a request's headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._timer is None:
            self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._scope_when_armed = getattr(self, "scope", None)
        self._timer = self.loop.call_later(self.header_timeout_s or _from_environment(), self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()


@functools.cache
def _from_environment() -> float:
    return Settings.from_env().http_read_timeout_s


def uvicorn_options(settings: Settings, *, workers: bool = False) -> dict[str, Any]:
    """The uvicorn settings that bound slow and greedy clients (worker processes import the protocol by name)."""
    own = type("HeaderDeadline", (HeaderDeadlineProtocol,), {"header_timeout_s": settings.http_read_timeout_s})
    return {
        "http": "server.transports.limits:HeaderDeadlineProtocol" if workers else own,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": 5,
    }
