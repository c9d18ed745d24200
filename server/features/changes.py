"""Change notices: after a tool changes what resources/list shows, every live session and listener hears of it.

Two eras, two routes. A 2025-11-25 client with a stateful session (stdio, Streamable HTTP with
`Mcp-Session-Id`, the legacy SSE transport) gets `notifications/resources/list_changed`: the caller on its
own call's stream, before the result, and every other session of this process on its standalone channel.
A 2026-07-28 client hears of it on its `subscriptions/listen` stream, through the server's `SubscriptionBus`
(an in-process one, or one over Redis that every replica shares). Either way only the sessions and listeners of
the account the change was made in are told (`server/state/events.py`): another account's listing did not change.
"""

from __future__ import annotations

import functools
import itertools
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import anyio
from anyio.abc import TaskGroup
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourcesListChanged, ServerEvent, SubscriptionBus
from mcp.types import (
    CallToolResult,
    InputRequiredResult,
    NotificationParams,
    ResourceListChangedNotification,
    ServerCapabilities,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from server import sdk_seams
from server.features import resources
from server.runtime import Runtime
from server.state.events import AccountBus, AccountListChanged, caller_account, reaches

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# A session that does not take a notice in this time (a client that stopped reading) is skipped, not waited for.
SEND_TIMEOUT_S = 5.0


class Changes:
    """The live handshake-era sessions of this server (each with its account), and its subscription bus: where a
    change notice goes.

    Sessions are held weakly and forgotten when they close, and at most `limit` of them (the oldest goes),
    so the registry never keeps a session alive nor grows without bound.
    """

    def __init__(self, bus: SubscriptionBus, *, limit: int) -> None:
        self.bus = AccountBus(bus)  # a listen stream hears its own account's changes only
        self._limit = limit
        self._sessions: weakref.WeakValueDictionary[int, Connection] = weakref.WeakValueDictionary()
        self._accounts: dict[int, str] = {}  # each held session's account, settled when it initialized
        self._keys = itertools.count()
        self._senders: list[TaskGroup] = []
        self.claimed = False  # whether the capabilities say `resources.listChanged` (set with them)

    def watch(self, session: ServerSession) -> None:
        """Keep the session that just initialized, until it closes, if it can be told of changes later.

        A 2026-07-28 connection is told through its listen stream instead, and one without a standalone
        channel (stateless HTTP: a connection per request) has nowhere to be told.
        """
        # The SDK (2.3) hands handlers a per-request ServerSession; the connection behind it is the client's session.
        connection = sdk_seams.connection(session)
        if connection is None or not connection.has_standalone_channel:
            return
        if connection.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        # Once per connection: a client that repeats `initialized` must not be told twice, nor push others out.
        if any(held is connection for held in self._sessions.values()):
            return
        key = next(self._keys)
        self._sessions[key] = connection
        self._accounts[key] = caller_account()
        connection.exit_stack.callback(self._forget, key)
        for oldest in list(self._sessions.keys())[: max(0, len(self._sessions) - self._limit)]:
            self._forget(oldest)
        for gone in self._accounts.keys() - self._sessions.keys():  # collected without closing: keep it bounded
            self._accounts.pop(gone, None)

    def _forget(self, key: int) -> None:
        self._sessions.pop(key, None)
        self._accounts.pop(key, None)

    def _of(self, event: ServerEvent) -> list[Connection]:
        """The held sessions `event` is for: those of its account."""
        return [c for k, c in list(self._sessions.items()) if reaches(event, self._accounts.get(k, ""))]

    @asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Where the notices to other sessions and listeners are sent from while the server runs (its lifespan),
        so a slow session never holds up the call that made the change. Leaving waits for the notices under
        way, each at most `SEND_TIMEOUT_S`."""
        async with anyio.create_task_group() as senders:
            self._senders.append(senders)
            try:
                yield
            finally:
                self._senders.remove(senders)

    async def resources_changed(self, ctx: Context[Any, Any]) -> None:
        """Tell everyone on the caller's account that resources/list changed; never raises, never waits for sessions
        other than the caller.

        The caller's notice rides its own call's stream, so it arrives before the result even where the
        client has no standalone stream open (it is sent only on that stream, not twice).
        """
        request = ctx.request_context
        caller = sdk_seams.connection(request.session)
        if request.session.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            await self._tell_caller(request)
        event = AccountListChanged(account=caller_account())
        others = [connection for connection in self._of(event) if connection is not caller]
        if self._senders:
            self._senders[-1].start_soon(self._publish_and_tell, event, others)
        else:  # outside a lifespan (not how the server runs): sent in line, each bounded
            await self._publish_and_tell(event, others)

    def announces(self, event: ServerEvent) -> bool:
        """Whether this server tells its clients of `event`: only a changed resource list, and only where its
        capabilities say so (a replica whose tools cannot change the listing passes no other's notice on)."""
        return self.claimed and isinstance(event, ResourcesListChanged)

    async def heard_elsewhere(self, event: ServerEvent) -> None:
        """Tell every session here on the change's account of a change another replica made (its listeners here
        already heard it)."""
        if self.announces(event):
            await self._tell_all(self._of(event))

    async def _tell_caller(self, request: ServerRequestContext[Any, Any]) -> None:
        with anyio.move_on_after(SEND_TIMEOUT_S):
            try:
                await request.session.send_notification(
                    ResourceListChangedNotification(), related_request_id=request.request_id
                )
            except Exception as exc:  # the client went away: its result will not arrive either
                log.info("no change notice for the calling session: %r", exc)

    async def _publish_and_tell(self, event: AccountListChanged, others: list[Connection]) -> None:
        try:
            with anyio.fail_after(SEND_TIMEOUT_S):
                await self.bus.publish(event)
        except Exception as exc:  # a shared bus that is down costs the listeners this notice, nothing more
            log.warning("change notice not published to listeners: %r", exc)
        await self._tell_all(others)

    async def _tell_all(self, others: list[Connection]) -> None:
        async with anyio.create_task_group() as tg:
            for connection in others:
                tg.start_soon(self._tell, connection)

    async def _tell(self, connection: Connection) -> None:
        with anyio.move_on_after(SEND_TIMEOUT_S) as waited:
            try:
                await connection.send_resource_list_changed()
            except Exception as exc:  # closed under us: forget it, the others are told all the same
                log.info("session gone, no change notice: %r", exc)
                for key, held in list(self._sessions.items()):
                    if held is connection:
                        self._forget(key)
        if waited.cancelled_caught:
            log.info("a session took no change notice within %s s; skipped", SEND_TIMEOUT_S)


def changed(result: object) -> bool:
    """Whether a tool's result says it did what it does: its own result, not an error or a question first."""
    return not isinstance(result, CallToolResult | InputRequiredResult)


def notifying(fn: Callable[P, Awaitable[T]], changes: Changes) -> Callable[P, Awaitable[T]]:
    """Wrap a wrapped tool (`server.tooling.calls.tool_call`) so its success is followed by the change notice.

    The listing's cache is dropped first, so a client that lists again on the notice sees the change.
    """

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        result = await fn(*args, **kwargs)
        ctx = kwargs.get("ctx")
        if isinstance(ctx, Context) and changed(result):
            runtime: Runtime = ctx.request_context.lifespan_context
            await resources.forget_snapshot_listing(runtime)
            await changes.resources_changed(ctx)
        return result

    return call


def honest_capabilities(server: Server[Any], *, resources_changed: bool) -> None:
    """Make the capabilities (initialize, server/discover) claim only the notices this server sends.

    `resources.listChanged` only while a tool that is on can change the listing. Never `tools.listChanged`,
    `prompts.listChanged` nor `resources.subscribe`: both lists are fixed for the life of the process and no
    resource update is sent (the SDK claims all three at 2026-07-28 because it serves `subscriptions/listen`).
    """

    def honest(caps: ServerCapabilities) -> ServerCapabilities:
        update: dict[str, Any] = {}
        if caps.resources is not None:
            update["resources"] = caps.resources.model_copy(
                update={"list_changed": resources_changed, "subscribe": False}
            )
        if caps.tools is not None:
            update["tools"] = caps.tools.model_copy(update={"list_changed": False})
        if caps.prompts is not None:
            update["prompts"] = caps.prompts.model_copy(update={"list_changed": False})
        return caps.model_copy(update=update)

    sdk_seams.override_capabilities(server, honest)


def watch_sessions(server: Server[Any], changes: Changes) -> None:
    """Register each session with `changes` once it has initialized (the handshake's last step)."""

    async def initialized(ctx: ServerRequestContext[Any, Any], _: NotificationParams) -> None:
        changes.watch(ctx.session)

    server.add_notification_handler("notifications/initialized", NotificationParams, initialized)
