"""Which tools a client sees: the operator's choice at start-up, narrowed per HTTP request by headers, never widened."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from server.calls import error_result
from server.config import Settings
from server.errors import ConfigurationError, ToolDisabled
from server.observe.logs import SecretMask

log = logging.getLogger(__name__)

TOOLS_HEADER = "x-mcp-tools"
READONLY_HEADER = "x-mcp-readonly"
_YES = frozenset({"1", "true", "yes", "on"})

Why = tuple[str, str]  # why a tool is off, and what enables it


@dataclass(frozen=True)
class Selection:
    """Every tool the server has (name -> read-only?), and the operator's verdict on each."""

    catalog: Mapping[str, bool]
    off: Mapping[str, Why]

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in self.catalog if name not in self.off)


def select(catalog: Mapping[str, bool], settings: Settings) -> Selection:
    """The operator's selection: which tools are on, and for each tool that is off, why and how to turn it on.

    Raises:
        ConfigurationError: an unknown tool name, or a selection that leaves no tool (it stops the start-up).
    """
    unknown = sorted({name for name in (*(settings.tools or ()), *settings.exclude_tools) if name not in catalog})
    if unknown:
        raise ConfigurationError(
            f"unknown tool name {', '.join(unknown)} in FLASHSNAP_TOOLS / FLASHSNAP_EXCLUDE_TOOLS "
            f"(--tools / --exclude-tools); valid names: {', '.join(catalog)}"
        )
    off: dict[str, Why] = {}
    restart = "and restart the server"
    for name, read_only in catalog.items():
        if settings.tools is not None and name not in settings.tools:
            off[name] = ("it is not in FLASHSNAP_TOOLS (--tools)", f"ask the user to add {name} to it {restart}")
        elif name in settings.exclude_tools:
            off[name] = (
                "it is listed in FLASHSNAP_EXCLUDE_TOOLS (--exclude-tools)",
                f"ask the user to remove it from there {restart}",
            )
        elif settings.read_only and not read_only:
            off[name] = (
                "the server is read-only (FLASHSNAP_READ_ONLY, --read-only) and this tool changes data",
                f"ask the user to turn read-only mode off {restart}",
            )
    selection = Selection(catalog, off)
    if not selection.enabled:
        raise ConfigurationError(
            "no tool left on: FLASHSNAP_TOOLS, FLASHSNAP_EXCLUDE_TOOLS and FLASHSNAP_READ_ONLY turn every tool off"
        )
    return selection


def narrowed_by(headers: Mapping[str, str] | None, selection: Selection) -> dict[str, Why]:
    """The tools this request's headers turn off, among those the operator left on. Headers never turn a tool on."""
    if headers is None:
        return {}
    off: dict[str, Why] = {}
    if wanted := {name.strip() for name in headers.get(TOOLS_HEADER, "").split(",") if name.strip()}:
        for name in selection.enabled:
            if name not in wanted:
                off[name] = ("this client's X-MCP-Tools header leaves it out", "add it to that header")
    if headers.get(READONLY_HEADER, "").strip().lower() in _YES:
        for name in selection.enabled:
            if not selection.catalog[name]:
                off.setdefault(name, ("this client's X-MCP-Readonly header asks for read-only tools", "drop it"))
    return off


class ToolFilter:
    """Server middleware: hides the tools that are off from tools/list, and answers a call to one with a clear error.

    It runs before argument validation, so a call to a tool that is off says so, whatever its arguments.
    """

    def __init__(self, selection: Selection) -> None:
        self.selection = selection

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in ("tools/list", "tools/call"):
            return await call_next(ctx)
        # Every HTTP transport hands the Starlette request of the message; stdio has none.
        request_off = narrowed_by(getattr(ctx.request, "headers", None), self.selection)
        if ctx.method == "tools/list":
            result = await call_next(ctx)
            if request_off and isinstance(result, dict):
                result = {**result, "tools": [t for t in result.get("tools", []) if t.get("name") not in request_off]}
            return result
        name = (ctx.params or {}).get("name")
        why = (self.selection.off.get(name) or request_off.get(name)) if isinstance(name, str) else None
        if why is None or not isinstance(name, str):
            return await call_next(ctx)
        log.info("refused a call to %s: the tool is off", name)
        refused = error_result(ToolDisabled(name, *why), SecretMask())
        return refused.model_dump(by_alias=True, exclude_none=True, mode="json")
