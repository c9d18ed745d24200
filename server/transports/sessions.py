"""Stateful Streamable HTTP sessions, bounded: at the limit the longest-idle session goes, not the newest client.

The SDK refuses every new session once its table is full, so clients that open sessions and never
close them (10,000 `initialize` POSTs take seconds) lock everyone else out until they expire.
"""

from __future__ import annotations

import logging
import math

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from server import sdk_seams

log = logging.getLogger(__name__)


def evict_oldest_idle(manager: StreamableHTTPSessionManager) -> None:
    """Make `manager` close its longest-idle session when a new one would not fit, instead of answering 503."""

    def make_room() -> None:
        if manager.max_sessions is not None and len(sdk_seams.live_sessions(manager)) >= manager.max_sessions:
            _evict_one(manager)

    sdk_seams.before_admission(manager, make_room)


def _evict_one(manager: StreamableHTTPSessionManager) -> None:
    # A session's idle deadline is infinite while a request (or its GET stream) is open: only idle ones go.
    idle = [
        (transport.idle_scope.deadline, session_id, transport)
        for session_id, transport in sdk_seams.live_sessions(manager).items()
        if transport.idle_scope is not None and math.isfinite(transport.idle_scope.deadline)
    ]
    if not idle:
        return
    _, session_id, transport = min(idle, key=lambda entry: entry[0])
    # Forgotten at once, so its id answers 404 and the table has room; its task then ends and terminates it.
    sdk_seams.forget_session(manager, session_id)
    assert transport.idle_scope is not None
    transport.idle_scope.cancel()
    log.info("session table full (%d): closed the longest-idle session", manager.max_sessions)
