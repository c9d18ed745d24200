"""Which tools a client sees: the operator's choice at start-up, narrowed per HTTP request by headers, never widened."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from server.auth import callers
from server.config import Settings, flag_word
from server.errors import ConfigurationError, ToolDisabled
from server.observe.logs import SecretMask
from server.tooling.calls import error_result
from server.tooling.spec import DEFAULT_TOOLSETS, TOOLSETS

log = logging.getLogger(__name__)

TOOLS_HEADER = "x-mcp-tools"
TOOLSETS_HEADER = "x-mcp-toolsets"
READONLY_HEADER = "x-mcp-readonly"

Why = tuple[str, str]  # why a tool is off, and what enables it


@dataclass(frozen=True)
class Selection:
    """Every tool the server has (name -> read-only?), and the operator's verdict on each."""

    catalog: Mapping[str, bool]
    off: Mapping[str, Why]
    toolset_of: Mapping[str, str] | None = None  # tool -> its toolset

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in self.catalog if name not in self.off)


def toolset_names(names: tuple[str, ...]) -> set[str]:
    """The toolsets a list of toolset names and keywords (`default`, `all`) means.

    Raises:
        ConfigurationError: a name that is neither a toolset nor a keyword.
    """
    unknown = sorted(set(names) - {*TOOLSETS, "default", "all"})
    if unknown:
        raise ConfigurationError(
            f"unknown toolset {', '.join(unknown)} in FLASHSNAP_TOOLSETS (--toolsets); "
            f"valid names: {', '.join(TOOLSETS)}, and the keywords default and all"
        )
    chosen = {name for name in names if name in TOOLSETS}
    if "default" in names:
        chosen |= set(DEFAULT_TOOLSETS)
    if "all" in names:
        chosen |= set(TOOLSETS)
    return chosen


def select(catalog: Mapping[str, bool], settings: Settings, toolset_of: Mapping[str, str] | None = None) -> Selection:
    """The operator's selection: which tools are on, and for each tool that is off, why and how to turn it on.

    Toolsets (default: `default`) choose tools; `tools` names tools besides them, or alone when no toolset is
    named; then `exclude_tools` and `read_only` take tools away.

    Raises:
        ConfigurationError: an unknown tool or toolset name, or a selection that leaves no tool (it stops the
            start-up).
    """
    toolset_of = toolset_of or {}
    unknown = sorted({name for name in (*(settings.tools or ()), *settings.exclude_tools) if name not in catalog})
    if unknown:
        raise ConfigurationError(
            f"unknown tool name {', '.join(unknown)} in FLASHSNAP_TOOLS / FLASHSNAP_EXCLUDE_TOOLS "
            f"(--tools / --exclude-tools); valid names: {', '.join(catalog)}"
        )
    if settings.toolsets is not None:
        toolsets = toolset_names(settings.toolsets)
    else:
        toolsets = set() if settings.tools is not None else set(DEFAULT_TOOLSETS)
    off: dict[str, Why] = {}
    restart = "and restart the server"
    for name, read_only in catalog.items():
        chosen_by_set = toolset_of.get(name, DEFAULT_TOOLSETS[0]) in toolsets
        if settings.tools is not None and name not in settings.tools and not chosen_by_set:
            off[name] = ("it is not in FLASHSNAP_TOOLS (--tools)", f"ask the user to add {name} to it {restart}")
        elif settings.tools is None and not chosen_by_set:
            toolset = toolset_of.get(name, "?")
            off[name] = (
                f"its toolset {toolset} is not chosen (FLASHSNAP_TOOLSETS, --toolsets; default: default)",
                f"ask the user to add {toolset} (or all) to FLASHSNAP_TOOLSETS {restart}",
            )
        elif name in settings.exclude_tools:
            off[name] = (
                "it is listed in FLASHSNAP_EXCLUDE_TOOLS (--exclude-tools)",
                f"ask the user to remove it from there {restart}",
            )
        elif settings.read_only and not read_only:
            off[name] = (
                "the server is read-only (FLASHSNAP_READ_ONLY, --read-only) and this tool creates, changes, "
                "spends or deletes",
                f"ask the user to turn read-only mode off {restart}",
            )
    selection = Selection(catalog, off, toolset_of)
    if not selection.enabled:
        raise ConfigurationError(
            "no tool left on: FLASHSNAP_TOOLSETS, FLASHSNAP_TOOLS, FLASHSNAP_EXCLUDE_TOOLS and FLASHSNAP_READ_ONLY "
            "turn every tool off"
        )
    return selection


def header_list(headers: Mapping[str, str], name: str) -> list[str] | None:
    """A header's members as RFC 9110 reads a list: every line of it (a proxy may split or join them), split on
    commas, blanks dropped; None when the header is absent."""
    getlist = getattr(headers, "getlist", None)  # Starlette's Headers keep every line; a plain mapping one
    lines: list[str] = list(getlist(name)) if getlist is not None else []
    if not lines and name in headers:
        lines = [headers[name]]
    if not lines:
        return None
    return [member.strip() for line in lines for member in line.split(",") if member.strip()]


def readonly_asked(headers: Mapping[str, str]) -> bool:
    """Whether X-MCP-Readonly asks for read-only tools: the settings' words (`1/true/yes/on`, `0/false/no/off`),
    every member of the list agreeing. Anything else (`t`, `y`, `true, false`, an empty value) narrows: a client
    that meant to narrow and misspelled it must not get the writers."""
    members = header_list(headers, READONLY_HEADER)
    if members is None:
        return False
    read = {flag_word(member) for member in members}
    return read != {False}


def narrowed_by(headers: Mapping[str, str] | None, selection: Selection) -> dict[str, Why]:
    """The tools this request's headers turn off, among those the operator left on. Headers never turn a tool on."""
    if headers is None:
        return {}
    off: dict[str, Why] = {}
    if wanted := set(header_list(headers, TOOLS_HEADER) or ()):
        for name in selection.enabled:
            if name not in wanted:
                off[name] = ("this client's X-MCP-Tools header leaves it out", "add it to that header")
    if wanted_sets := tuple(header_list(headers, TOOLSETS_HEADER) or ()):
        try:
            sets = toolset_names(wanted_sets)
        except ConfigurationError:
            sets = {name for name in wanted_sets if name in TOOLSETS}  # an unknown name only narrows further
        for name in selection.enabled:
            if (selection.toolset_of or {}).get(name) not in sets:
                off.setdefault(name, ("this client's X-MCP-Toolsets header leaves it out", "add its toolset there"))
    if readonly_asked(headers):
        for name in selection.enabled:
            if not selection.catalog[name]:
                off.setdefault(name, ("this client's X-MCP-Readonly header asks for read-only tools", "drop it"))
    return off


class ToolFilter:
    """Server middleware: hides the tools that are off from tools/list, and answers a call to one with a clear error.

    It runs before argument validation, so a call to a tool that is off says so, whatever its arguments.
    """

    def __init__(
        self,
        selection: Selection,
        prompt_needs: Mapping[str, tuple[str, ...]] | None = None,
        resource_needs: Callable[[str], tuple[str, ...]] | None = None,
        tool_scopes: Mapping[str, str] | None = None,
    ) -> None:
        self.selection = selection
        self.tool_scopes = tool_scopes or {}  # tool -> the scope a call needs (tools/list follows the policy)
        self.prompt_needs = prompt_needs or {}  # prompt -> the tools it asks the model to call
        self.resource_needs = resource_needs or (lambda _: ())  # resource URI or template -> the tools it reads through

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method in ("prompts/list", "prompts/get"):
            return await self.prompts(ctx, call_next)
        if ctx.method in ("resources/templates/list", "resources/read"):
            return await self.resources(ctx, call_next)
        if ctx.method not in ("tools/list", "tools/call"):
            return await call_next(ctx)
        # Every HTTP transport hands the Starlette request of the message; stdio has none.
        request_off = narrowed_by(getattr(ctx.request, "headers", None), self.selection)
        if ctx.method == "tools/list":
            result = await call_next(ctx)
            hidden = set(request_off) | self.outside_policy()
            if hidden and isinstance(result, dict):
                result = {**result, "tools": [t for t in result.get("tools", []) if t.get("name") not in hidden]}
            return result
        name = (ctx.params or {}).get("name")
        why = (self.selection.off.get(name) or request_off.get(name)) if isinstance(name, str) else None
        if why is None or not isinstance(name, str):
            return await call_next(ctx)
        log.info("refused a call to %s: the tool is off", name)
        refused = error_result(ToolDisabled(name, *why), SecretMask())
        return refused.model_dump(by_alias=True, exclude_none=True, mode="json")

    def outside_policy(self) -> set[str]:
        """The tools the caller's policy (the team file's scopes) does not allow: unlisted for it.

        The policy, not the token's scopes of the moment: a client must see a tool to call it, get the 403 and
        step up to the scope it needs. A call to one is judged by the transport (server/transports/identity.py).
        """
        caller = callers.current()
        if caller is None:
            return set()
        return {name for name, needed in self.tool_scopes.items() if needed not in caller.policy}

    async def prompts(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Hides the prompts that ask for a tool this request's headers turn off; fetching one is an error.

        Raises:
            MCPError: prompts/get of a prompt that is off, unknown, or missing a required argument
                (invalid params, with what is wrong, instead of the SDK's internal error).
        """
        request_off = narrowed_by(getattr(ctx.request, "headers", None), self.selection)
        hidden = {name for name, tools in self.prompt_needs.items() if any(tool in request_off for tool in tools)}
        if ctx.method == "prompts/list":
            result = await call_next(ctx)
            if hidden and isinstance(result, dict):
                result = {**result, "prompts": [p for p in result.get("prompts", []) if p.get("name") not in hidden]}
            return result
        name = (ctx.params or {}).get("name")
        if name in hidden:
            raise MCPError(
                INVALID_PARAMS, f"prompt {name} is off: this client's X-MCP-* headers leave out a tool it uses"
            )
        try:
            return await call_next(ctx)
        except ValueError as exc:  # the SDK's unknown prompt or missing argument
            raise MCPError(INVALID_PARAMS, str(exc)) from exc

    async def resources(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Hides the resource templates that read through a tool this request's headers turn off.

        (resources/list is built per request from the tools on; see server/app.py.)

        Raises:
            MCPError: resources/read of a resource this request's headers turn off.
        """
        request_off = narrowed_by(getattr(ctx.request, "headers", None), self.selection)

        def hidden(uri: object) -> bool:
            return isinstance(uri, str) and any(tool in request_off for tool in self.resource_needs(uri))

        if ctx.method == "resources/read":
            uri = (ctx.params or {}).get("uri")
            if hidden(uri):
                raise MCPError(
                    INVALID_PARAMS, f"resource {uri} is off: this client's X-MCP-* headers leave out its tool"
                )
            return await call_next(ctx)
        result = await call_next(ctx)
        if request_off and isinstance(result, dict):
            kept = [t for t in result.get("resourceTemplates", []) if not hidden(t.get("uriTemplate"))]
            result = {**result, "resourceTemplates": kept}
        return result
