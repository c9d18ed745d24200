"""The app factory: the MCPServer, its lifespan, and every tool (this is the only importer of `tools`)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

import tools
from server import __version__, arguments
from server.calls import error_result, tool_call
from server.clock import Clock
from server.config import Settings
from server.logs import SecretMask
from server.runtime import Runtime, open_runtime

INSTRUCTIONS = """\
flashsnap-mcp connects you to neuroflash (AI writing) and NeuralSnap (the user's second brain).
- neuroflash: list_workspaces, check_quota, list_models, then generate. generate spends words from
  the workspace's daily and monthly quota; check_quota says what is left and when it resets.
- NeuralSnap: snapshot saves a structured thought; search_snapshots and get_snapshot find it again.
Failed calls say what happened and what to do. Never repeat a generate or snapshot whose error says
maybe_processed is true without checking first: it may already have spent words or saved the snapshot."""

_NO_MASK = SecretMask()

SANDBOX_NOTE = """
SANDBOX MODE: this server talks to a local emulator with demo data, not the real services.
Nothing generated or saved here is real, and no real quota is spent."""


class FlashsnapServer(MCPServer[Runtime]):
    """The SDK's server, with argument failures answered in this server's error format."""

    def close_tool_arguments(self) -> None:
        # The SDK builds each tool's argument model from its signature; closing it needs the tool itself.
        for tool in self._tool_manager.list_tools():
            arguments.close(tool)

    async def call_tool(
        self, name: str, arguments_: dict[str, Any], context: Context[Runtime, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments_, context)
        except ToolError as exc:
            tool = self._tool_manager.get_tool(name)
            if tool is None or not isinstance(exc.__cause__, ValidationError):
                raise
            error = arguments.invalid_arguments(name, arguments.allowed_names(tool), exc.__cause__)
            return error_result(error, context.request_context.lifespan_context.mask if context else _NO_MASK)


def create_app(
    settings: Settings, *, clock: Clock | None = None, shared: Callable[[], Runtime] | None = None
) -> FlashsnapServer:
    """A ready MCPServer; its lifespan opens the upstream clients once and closes them at exit.

    `shared` hands every session the one runtime an HTTP server opened for the whole process, so
    sessions share the token manager and the rate-limit gates instead of opening their own.
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        if shared is not None:
            yield shared()
            return
        async with open_runtime(settings, clock) as runtime:
            yield runtime

    app = FlashsnapServer(
        "flashsnap-mcp",
        title="neuroflash + NeuralSnap",
        version=__version__,
        instructions=INSTRUCTIONS + (SANDBOX_NOTE if settings.sandbox else ""),
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    for spec in tools.ALL:
        app.add_tool(
            tool_call(spec.fn),
            name=spec.name,
            title=spec.title,
            description=inspect.cleandoc(spec.fn.__doc__ or ""),
            annotations=spec.annotations,
        )
    app.close_tool_arguments()
    return app
