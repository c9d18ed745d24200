"""Each seam into the MCP SDK's private internals (server/sdk_seams.py) still holds in the installed `mcp`.

An `mcp` upgrade that moves one fails here, naming the seam and what it served, before a transport or a
notice breaks somewhere else. A seam that is gone needs another way in, written in server/sdk_seams.py alone.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
from pathlib import Path
from typing import Any

import mcp
from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import ServerCapabilities

from server import sdk_seams

MCP = importlib.metadata.version("mcp")


def gone(seam: str, served: str) -> str:
    return f"mcp {MCP}: the seam {seam} is gone; server/sdk_seams.py needs another way in. It served: {served}"


def test_the_context_streams_module() -> None:
    module = importlib.import_module("mcp.shared._context_streams")
    assert hasattr(module, "create_context_streams"), gone(
        "mcp.shared._context_streams.create_context_streams", "stdio's own streams into Server.run"
    )


def test_an_mcpserver_runs_a_lowlevel_server() -> None:
    app = MCPServer("probe")
    assert isinstance(getattr(app, "_lowlevel_server", None), Server), gone(
        "MCPServer._lowlevel_server", "handlers MCPServer does not expose, capabilities, stdio's Server.run"
    )
    assert sdk_seams.lowlevel_server(app) is app._lowlevel_server


def test_an_mcpserver_holds_its_tools_in_a_tool_manager() -> None:
    app = MCPServer("probe")

    def probe(n: int) -> int:
        return n

    app.add_tool(probe)
    manager = getattr(app, "_tool_manager", None)
    served = "closing each tool's argument model; naming a tool's arguments when they fail"
    assert manager is not None, gone("MCPServer._tool_manager", served)
    assert [t.name for t in sdk_seams.tools(app)] == ["probe"], gone("MCPServer._tool_manager.list_tools", served)
    found = sdk_seams.tool(app, "probe")
    assert found is not None, gone("MCPServer._tool_manager.get_tool", served)
    assert sdk_seams.tool(app, "nothing") is None
    assert hasattr(found, "fn_metadata"), gone("Tool.fn_metadata", served)


def test_a_per_request_session_reaches_its_connection() -> None:
    connection = Connection(outbound=Any, protocol_version="2025-11-25")  # type: ignore[arg-type]
    session = ServerSession(request_outbound=Any, connection=connection)  # type: ignore[arg-type]
    assert sdk_seams.connection(session) is connection, gone(
        "ServerSession._connection", "telling other sessions that the resource list changed"
    )


def test_a_server_derives_its_capabilities_in_the_one_method_an_instance_can_replace() -> None:
    server: Server[Any] = Server("probe")
    claimed = ServerCapabilities(experimental={"io.flashsnap/probe": {}})
    sdk_seams.override_capabilities(server, lambda _caps: claimed)
    options = server.create_initialization_options()
    assert options.capabilities == claimed, gone(
        "Server.get_capabilities (looked up on the instance)", "capabilities that claim only the notices sent"
    )


def test_a_session_manager_admits_each_new_session_through_one_method() -> None:
    manager = StreamableHTTPSessionManager(app=Server("probe"), max_sessions=2)
    served = "bounded sessions: the longest-idle one goes when the table is full"
    stateful = StreamableHTTPSessionManager._handle_stateful_request.__code__.co_names
    assert "_admit_session" in stateful, gone("StreamableHTTPSessionManager._admit_session", served)
    for table in ("_server_instances", "_session_owners"):
        assert isinstance(getattr(manager, table, None), dict), gone(f"StreamableHTTPSessionManager.{table}", served)

    steps: list[tuple[int, object]] = []
    refused = object()

    def step(requestor: object) -> bool:
        steps.append((len(sdk_seams.live_sessions(manager)), requestor))
        return requestor is not refused

    sdk_seams.before_admission(manager, step)
    owner = object()
    transport = manager._admit_session(owner)  # type: ignore[arg-type]
    assert transport is not None
    assert steps == [(0, owner)]
    session_id = transport.mcp_session_id
    assert session_id is not None
    assert sdk_seams.live_sessions(manager) == {session_id: transport}
    assert manager._session_owners == {session_id: owner}, gone("StreamableHTTPSessionManager._session_owners", served)
    assert sdk_seams.session_owners(manager) == {session_id: owner}
    assert manager._admit_session(refused) is None  # type: ignore[arg-type]
    assert sdk_seams.live_sessions(manager) == {session_id: transport}

    sdk_seams.forget_session(manager, session_id)
    assert sdk_seams.live_sessions(manager) == {}
    assert manager._session_owners == {}


def private_names(paths: list[Path]) -> set[str]:
    """The `_names` these modules define: attributes set on `self`, and methods."""
    pattern = re.compile(r"self\.(_[a-z]\w*)\s*[:=]|def (_[a-z]\w*)\(")
    return {a or b for path in paths for a, b in pattern.findall(path.read_text(errors="replace"))}


def sdk_touches(path: Path, sdk_private: set[str]) -> list[str]:
    """Where `path` imports a private `mcp` module or names a `_name` only the SDK defines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        private = [m for m in modules if m.split(".")[0] == "mcp" and any(p.startswith("_") for p in m.split("."))]
        if private and isinstance(node, ast.Import | ast.ImportFrom):
            found += [f"{node.lineno}: imports {m}" for m in private]
        if isinstance(node, ast.Attribute) and node.attr in sdk_private:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in sdk_private:
            found.append(f"{node.lineno}: {node.value!r}")
    return found


def test_no_module_but_the_seams_reaches_into_the_sdk() -> None:
    """A private `mcp` module, or a `_name` the SDK defines and the module itself does not, is in sdk_seams alone."""
    root = Path(__file__).parent.parent
    sdk_private = private_names(sorted(Path(mcp.__path__[0]).rglob("*.py")))
    ours = sorted(p for room in ("server", "tools") for p in (root / room).rglob("*.py") if "sandbox" not in p.parts)
    touches = {
        str(path.relative_to(root)): found
        for path in ours
        if path.name != "sdk_seams.py" and (found := sdk_touches(path, sdk_private - private_names([path])))
    }
    assert touches == {}, f"reaches into the SDK's internals outside server/sdk_seams.py: {touches}"
    assert sdk_touches(root / "server" / "sdk_seams.py", sdk_private), "the finder no longer sees the seams"
