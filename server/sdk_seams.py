"""Every reach into the MCP SDK's private internals, each behind one named function (tests/test_sdk_seams.py).

The SDK (2.3) offers no public way to do these; each says what it takes and why. An `mcp` upgrade that moves
one fails tests/test_sdk_seams.py, which names the seam, instead of breaking somewhere nobody can list. Nothing
else in the server touches a private `_name` of an SDK object or imports a private `mcp` module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.session import ServerSession
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import ListenHandler

# The streams `Server.run` reads and writes carry each sender's contextvars along with its message; stdio makes
# its own pair (to put the JSON-RPC guard in front), and the SDK makes them in a private module.
from mcp.shared._context_streams import create_context_streams as create_context_streams
from mcp.types import ServerCapabilities


def lowlevel_server(app: MCPServer[Any]) -> Server[Any]:
    """The low-level server an MCPServer runs: for request and notification handlers MCPServer does not expose,
    its capabilities, and `run` with streams of our own."""
    return app._lowlevel_server


def close_listen_streams(app: MCPServer[Any]) -> None:
    """End every open `subscriptions/listen` stream of `app` gracefully: each sends what it holds, then its result
    (the SDK's `ListenHandler.close`, which MCPServer registers and does not expose)."""
    entry = lowlevel_server(app).get_request_handler("subscriptions/listen")
    if entry is not None and isinstance(entry.handler, ListenHandler):
        entry.handler.close()


def tools(app: MCPServer[Any]) -> list[Tool]:
    """The tools registered on `app`, as the SDK holds them (their argument models are closed in place)."""
    return app._tool_manager.list_tools()


def tool(app: MCPServer[Any], name: str) -> Tool | None:
    """The tool `name` registered on `app`, or None."""
    return app._tool_manager.get_tool(name)


def connection(session: ServerSession) -> Connection | None:
    """The connection behind a per-request ServerSession: it lives as long as the client's session and owns its
    standalone channel, and the SDK reaches it only through that proxy."""
    found = getattr(session, "_connection", None)
    return found if isinstance(found, Connection) else None


def override_capabilities(server: Server[Any], adjust: Callable[[ServerCapabilities], ServerCapabilities]) -> None:
    """Pass every capabilities object `server` derives (initialize and server/discover, both eras) through `adjust`.

    The SDK derives them in this one method and has no hook for it: the method is replaced on this one instance.
    """
    derive = server.get_capabilities

    @functools.wraps(derive)
    def get_capabilities(*args: Any, **kwargs: Any) -> ServerCapabilities:
        return adjust(derive(*args, **kwargs))

    setattr(server, "get_capabilities", get_capabilities)  # noqa: B010


def before_admission(manager: StreamableHTTPSessionManager, step: Callable[[Any], bool]) -> None:
    """Run `step(requestor)` each time `manager` is about to admit a new session for `requestor` (the principal
    the SDK binds it to, None without auth), and refuse it, were its table full; `step` False refuses it too.

    The SDK has no hook for this: its admission method is wrapped on this one instance.
    """
    admit = manager._admit_session

    def admitting(requestor: Any) -> StreamableHTTPServerTransport | None:
        if not step(requestor):
            return None
        return admit(requestor)

    setattr(manager, "_admit_session", admitting)  # noqa: B010


def live_sessions(manager: StreamableHTTPSessionManager) -> dict[str, StreamableHTTPServerTransport]:
    """The manager's table of live sessions by id (its own dict: read it, change it through `forget_session`)."""
    return manager._server_instances


def session_owners(manager: StreamableHTTPSessionManager) -> dict[str, Any]:
    """The principal each live session is bound to, by session id (the SDK's own dict: read it only)."""
    return manager._session_owners


def forget_session(manager: StreamableHTTPSessionManager, session_id: str) -> None:
    """Drop a session from the manager's tables at once: its id answers 404 and its place is free."""
    manager._server_instances.pop(session_id, None)
    manager._session_owners.pop(session_id, None)
