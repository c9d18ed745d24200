"""Whom a call takes its turn as at the upstream's shared gates: the fairness key, its label and its weight.

The principal where the team file names one (`tokens`, `oauth`): a person with many sessions on many replicas is
one. Without a team (`token`, `none`), one principal per MCP session where the transport has one (stateful
Streamable HTTP's `Mcp-Session-Id`, SSE's `session_id`), else one for every caller (stateless HTTP). Over stdio,
the process: each client's own process is one. The key is the same string in every process and replica, since
the shared window document orders waiting calls by it.
"""

from __future__ import annotations

import hashlib
import os
import socket
from functools import cache
from typing import Any

from mcp.server.mcpserver import Context

from server.auth import callers
from server.context import ANYONE, Turn

SESSION_HEADER = "mcp-session-id"
SSE_SESSION_PARAM = "session_id"


@cache
def this_process() -> Turn:
    """The turn of every call over stdio: this process, by host and pid (one client each)."""
    return Turn(f"process:{socket.gethostname()[:64]}:{os.getpid()}", "local")


def turn_of(ctx: Context[Any, Any]) -> Turn:
    """Whom the call of `ctx` takes its turn as (see the module's docstring)."""
    caller = callers.current()
    if caller is not None:
        return Turn(caller.principal, caller.label, caller.weight)
    request = ctx.request_context.request
    if request is None:
        return this_process()
    headers = getattr(request, "headers", None)
    params = getattr(request, "query_params", None)
    session = (headers.get(SESSION_HEADER) if headers is not None else None) or (
        params.get(SSE_SESSION_PARAM) if params is not None else None
    )
    if not session:
        return ANYONE
    # Hashed: the key is stored in the window document, readable by the store's other clients.
    return Turn("session:" + hashlib.sha256(session.encode("utf-8", "replace")).hexdigest()[:24], ANYONE.label)
