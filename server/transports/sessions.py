"""Stateful Streamable HTTP sessions, bounded: at the limit the longest-idle session goes, not the newest client.

The SDK refuses every new session once its table is full, so clients that open sessions and never
close them (10,000 `initialize` POSTs take seconds) lock everyone else out until they expire. Where each
request names its principal (tokens, oauth), each also has a table of its own within the whole: at its bound a
new session closes that principal's own longest-idle one, and with none idle it alone is refused, so one
principal's busy sessions cannot lock the others out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from server import sdk_seams

log = logging.getLogger(__name__)


def evict_oldest_idle(manager: StreamableHTTPSessionManager, *, per_principal: int | None = None) -> None:
    """Make `manager` close its longest-idle session when a new one would not fit, instead of answering 503;
    a principal holding `per_principal` sessions closes its own longest-idle one, or is refused (503)."""

    def make_room(requestor: Any) -> bool:
        live = sdk_seams.live_sessions(manager)
        if requestor is not None and per_principal is not None:
            owners = sdk_seams.session_owners(manager)
            own = [session_id for session_id in live if owners.get(session_id) == requestor]
            if len(own) >= per_principal and not _evict_one(manager, own):
                log.warning("a principal holds %d busy sessions, its bound: its new session is refused", len(own))
                return False
        if manager.max_sessions is not None and len(live) >= manager.max_sessions:
            _evict_one(manager, list(live))
        return True

    sdk_seams.before_admission(manager, make_room)


def _evict_one(manager: StreamableHTTPSessionManager, among: Iterable[str]) -> bool:
    """Close the longest-idle session of `among`; False when none of them is idle."""
    live = sdk_seams.live_sessions(manager)
    # A session's idle deadline is infinite while a request (or its GET stream) is open: only idle ones go.
    idle = [
        (transport.idle_scope.deadline, session_id, transport)
        for session_id in among
        if (transport := live.get(session_id)) is not None
        and transport.idle_scope is not None
        and math.isfinite(transport.idle_scope.deadline)
    ]
    if not idle:
        return False
    _, session_id, transport = min(idle, key=lambda entry: entry[0])
    # Forgotten at once, so its id answers 404 and the table has room; its task then ends and terminates it.
    sdk_seams.forget_session(manager, session_id)
    assert transport.idle_scope is not None
    transport.idle_scope.cancel()
    log.info("session table full (%d): closed the longest-idle session", manager.max_sessions)
    return True
