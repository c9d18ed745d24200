"""The app factory: the MCPServer, its lifespan, and every tool (this is the only importer of `tools`)."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.request_state import RequestStateSecurity
from mcp.server.subscriptions import InMemorySubscriptionBus, SubscriptionBus
from mcp.types import (
    CallToolResult,
    CompleteRequestParams,
    CompleteResult,
    InputRequiredResult,
    ListResourcesResult,
    PaginatedRequestParams,
)
from pydantic import ValidationError

import tools
from server import __version__, sdk_seams
from server.clock import Clock
from server.config import Settings
from server.features import changes, prompts, resources
from server.observe.logs import SecretMask
from server.runtime import Runtime, open_runtime
from server.tooling import arguments, trust
from server.tooling.answers import BoundedErrors
from server.tooling.audited import AuditTrail
from server.tooling.calls import InFlight, error_result, tool_call
from server.tooling.routing import OpenRoutedAccount
from server.tooling.selection import Selection, ToolFilter, select

_NO_MASK = SecretMask()

# SEP-2549 freshness hints, only where they are true: the tool list and the server's description are fixed
# for the life of the process (headers may narrow the list per client, hence private). Tool results change.
CACHE_HINTS: dict[CacheableMethod, CacheHint] = {
    "tools/list": CacheHint(ttl_ms=600_000, scope="private"),
    "server/discover": CacheHint(ttl_ms=600_000, scope="private"),
}


class FlashsnapServer(MCPServer[Runtime]):
    """The SDK's server, with argument failures answered in this server's error format.

    `in_flight` holds the tool calls running now: a transport that shuts down waits for them, then cuts the rest.
    """

    in_flight: InFlight
    notices: changes.Changes
    tool_scopes: dict[str, str]  # tool -> the scope a call needs (server/auth/scopes.py), for the HTTP 403

    def add_request_handler(self, method: str, params_type: Any, handler: Any) -> None:
        """A request handler of the low-level server (completion/complete: MCPServer's own hands no context)."""
        sdk_seams.lowlevel_server(self).add_request_handler(method, params_type, handler)

    def tell_of_changes(self, notices: changes.Changes, *, resources_change: bool) -> None:
        """Keep track of the sessions `notices` tells of changes, and declare the notices this server sends."""
        server = sdk_seams.lowlevel_server(self)
        changes.watch_sessions(server, notices)
        changes.honest_capabilities(server, resources_changed=resources_change)
        notices.claimed = resources_change

    def close_tool_arguments(self) -> None:
        # The SDK builds each tool's argument model from its signature; closing it needs the tool itself.
        for tool in sdk_seams.tools(self):
            arguments.close(tool)

    async def call_tool(
        self, name: str, arguments_: dict[str, Any], context: Context[Runtime, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments_, context)
        except ToolError as exc:
            tool = sdk_seams.tool(self, name)
            if tool is None or not isinstance(exc.__cause__, ValidationError):
                raise
            error = arguments.invalid_arguments(name, arguments.allowed_names(tool), exc.__cause__)
            return error_result(error, context.request_context.lifespan_context.mask if context else _NO_MASK)


def tool_description(fn: Callable[..., Any]) -> str:
    """What a model reads about a tool: its function's docstring, without the `Raises:` section kept for developers."""
    return inspect.cleandoc(fn.__doc__ or "").split("\n\nRaises:\n", 1)[0]


def tool_selection(settings: Settings) -> Selection:
    """The tools the operator turned on; unknown names raise ConfigurationError, listing the valid ones."""
    catalog = {spec.name: spec.read_only for spec in tools.ALL}
    return select(catalog, settings, {spec.name: spec.toolset for spec in tools.ALL})


def request_state_security(settings: Settings) -> RequestStateSecurity:
    """The key that seals a question's state between a 2026-07-28 client's rounds.

    The second round may reach another worker or replica, so every one must hold the same key: the one
    set, else one derived from the upstream credentials they all share (hashed with a label, so the state
    key reveals no credential). With no secret at all, a key of this process alone.
    """
    if settings.request_state_key is not None:
        return RequestStateSecurity(keys=[settings.request_state_key.get_secret_value()])
    shared = [s.get_secret_value() for s in (settings.neuroflash_client_secret, settings.neuralsnap_api_key) if s]
    if not shared:
        return RequestStateSecurity.ephemeral()
    material = "\0".join(["flashsnap-mcp request state v1", *shared]).encode()
    return RequestStateSecurity(keys=[hashlib.sha256(material).hexdigest()])


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    shared: Callable[[], Runtime] | None = None,
    bus: SubscriptionBus | None = None,
) -> FlashsnapServer:
    """A ready MCPServer; its lifespan opens the upstream clients once and closes them at exit.

    `shared` hands every session the one runtime an HTTP server opened for the whole process, so
    sessions share the token manager and the rate-limit gates instead of opening their own. `bus` carries
    change notices to `subscriptions/listen` streams (default: within this process). Who is calling over HTTP is settled
    at the door (server/transports/identity.py), which puts the caller where the SDK reads it (`scope["user"]`,
    `get_access_token()`): the SDK binds sessions and sealed questions to it without verifying the token again.
    """

    selection = tool_selection(settings)
    notices = changes.Changes(bus or InMemorySubscriptionBus(), limit=settings.max_sessions)

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        async with notices.sending():
            if shared is not None:
                yield shared()
                return
            async with open_runtime(settings, clock) as runtime:
                yield runtime

    app = FlashsnapServer(
        "flashsnap-mcp",
        title="neuroflash + NeuralSnap",
        version=__version__,
        # Built once, from the operator's selection: sent at initialize / server/discover, not per request.
        instructions=prompts.instructions(
            tools.ALL,
            selection.enabled,
            sandbox=settings.sandbox,
            confirm_words=settings.confirm_words,
            confirm_delete=settings.confirm_delete,
        ),
        lifespan=lifespan,
        log_level=settings.log_level,
        cache_hints=CACHE_HINTS,
        request_state_security=request_state_security(settings),
        subscriptions=notices.bus,
    )
    app.in_flight = InFlight()
    app.notices = notices
    app.tool_scopes = {spec.name: spec.scope for spec in tools.ALL}
    app.middleware.append(BoundedErrors())  # the outermost: every error below it is masked and bounded
    app.middleware.append(AuditTrail(resources.template_of))  # outside the filter: a refused call is recorded
    app.middleware.append(OpenRoutedAccount())  # an account a reloaded team file routes the caller to
    app.middleware.append(trust.UpstreamText({spec.name: spec.quotes for spec in tools.ALL if spec.quotes}))
    app.middleware.append(ToolFilter(selection, prompts.PROMPT_NEEDS, resources.resource_needs, app.tool_scopes))
    prompts.register(app, selection)
    resources.register(app, selection.enabled)

    async def complete(ctx: ServerRequestContext[Any, Any], params: CompleteRequestParams) -> CompleteResult:
        return CompleteResult(completion=await prompts.complete(ctx, selection, params))

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], _: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        listed = await app.list_resources()
        return ListResourcesResult(
            resources=listed + await resources.recent_snapshots(ctx, prompts.enabled_for(ctx.request, selection))
        )

    app.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    app.add_request_handler("completion/complete", CompleteRequestParams, complete)
    # A change to the snapshots is news only where resources/list shows them (it needs list_snapshots).
    listing = all(tool in selection.enabled for tool in resources.LISTING_NEEDS)
    notifying = False
    for spec in tools.ALL:
        if spec.name not in selection.enabled:
            continue  # unlisted; the filter answers a call to it with how to turn it on
        call = tool_call(spec.fn, in_flight=app.in_flight, read_only=spec.read_only)
        if listing and "resources" in spec.changes:
            call, notifying = changes.notifying(call, notices), True
        app.add_tool(
            call,
            name=spec.name,
            title=spec.title,
            description=tool_description(spec.fn)
            + (f"\n\n{trust.description_line(spec.quotes)}" if spec.quotes else ""),
            annotations=spec.annotations,
        )
    app.close_tool_arguments()
    app.tell_of_changes(notices, resources_change=notifying)
    return app
