"""Stateful Streamable HTTP sessions, bounded: at the limit the longest-idle session goes, not the newest client.

The SDK refuses every new session once its table is full, so clients that open sessions and never
close them (10,000 `initialize` POSTs take seconds) lock everyone else out until they expire.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

log = logging.getLogger(__name__)


def evict_oldest_idle(manager: StreamableHTTPSessionManager) -> None:
    """Make `manager` close its longest-idle session when a new one would not fit, instead of answering 503."""
    admit = manager._admit_session

    def admit_or_evict(requestor: Any) -> Any:
        if manager.max_sessions is not None and len(manager._server_instances) >= manager.max_sessions:
            _evict_one(manager)
        return admit(requestor)

    # The SDK has no hook for this: its admission step is wrapped on this one instance.
    setattr(manager, "_admit_session", admit_or_evict)  # noqa: B010


def _evict_one(manager: StreamableHTTPSessionManager) -> None:
    # A session's idle deadline is infinite while a request (or its GET stream) is open: only idle ones go.
    idle = [
        (transport.idle_scope.deadline, session_id, transport)
        for session_id, transport in manager._server_instances.items()
        if transport.idle_scope is not None and math.isfinite(transport.idle_scope.deadline)
    ]
    if not idle:
        return
    _, session_id, transport = min(idle, key=lambda entry: entry[0])
    # Forgotten at once, so its id answers 404 and the table has room; its task then ends and terminates it.
    manager._server_instances.pop(session_id, None)
    manager._session_owners.pop(session_id, None)
    assert transport.idle_scope is not None
    transport.idle_scope.cancel()
    log.info("session table full (%d): closed the longest-idle session", manager.max_sessions)
