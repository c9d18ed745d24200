"""The subscription bus over Redis pub/sub, so a listener on one replica hears of a change made through another.

Events are delivered in this process at once and published on one channel every replica subscribes to; a
replica skips what it published itself. Redis that is down costs the other replicas' listeners the notices
sent meanwhile (there is no replay, as the protocol has none): never a tool call, never this replica's own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import redis.asyncio as aioredis
from anyio.abc import TaskGroup, TaskStatus
from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent
from redis.exceptions import RedisError

from server.backoff import full_jitter
from server.state.events import decode, encode
from server.state.redis import where

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 2.0

Elsewhere = Callable[[ServerEvent], Awaitable[None]]


class RedisBus:
    """A `SubscriptionBus` shared by every replica on one Redis or Valkey.

    `elsewhere` hears the events other replicas published (this process's stateful sessions are told of
    those by it); the listen streams hear every event, wherever it was published.
    """

    def __init__(self, url: str, *, prefix: str = "flashsnap:") -> None:
        self.channel = f"{prefix}events"
        self._where = where(url)
        self._origin = uuid.uuid4().hex  # this process, so it skips its own events coming back
        self._local = InMemorySubscriptionBus()
        self._elsewhere: list[Elsewhere] = []
        self._wanted: list[Callable[[ServerEvent], bool]] = []
        self._tasks: TaskGroup | None = None
        # No read timeout: a subscription waits for as long as nothing happens.
        # Bytes, decoded by `decode`: redis-py's own decoding raises inside the subscription on invalid UTF-8.
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=PUBLISH_TIMEOUT_S, decode_responses=False)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register `listener` for every event; returns its idempotent unsubscribe."""
        return self._local.subscribe(listener)

    def from_elsewhere(self, hook: Elsewhere, *, wanted: Callable[[ServerEvent], bool] = lambda _: True) -> None:
        """Have `hook` run for each event another replica published that this one passes on (`wanted`)."""
        self._elsewhere.append(hook)
        self._wanted.append(wanted)

    async def publish(self, event: ServerEvent) -> None:
        """Deliver `event` here, then to the other replicas; a Redis that cannot take it is logged, not raised."""
        await self._local.publish(event)
        try:
            with anyio.fail_after(PUBLISH_TIMEOUT_S):
                await self._redis.publish(self.channel, encode(event, self._origin))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("change notice not sent to the other replicas (%s): %s", self._where, type(exc).__name__)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Hear the other replicas while the server runs; entered once the channel is subscribed (or Redis
        failed to answer, then retried in the background), so a replica reported up hears what follows."""
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                await tasks.start(self._listen)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
                    self._tasks = None
        finally:
            with anyio.CancelScope(shield=True):
                await self._redis.aclose()

    async def _listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        attempt, started = 0, False
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    attempt = 0
                    if not started:
                        task_status.started()
                        started = True
                    async for message in pubsub.listen():
                        await self._heard(message.get("data"))
            except Exception as exc:  # Redis gone, or anything else: this loop must outlive it, or the server ends
                attempt += 1
                log.warning("not hearing the other replicas' change notices (%s): %r", self._where, exc)
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(full_jitter(attempt, cap_s=10.0))

    async def _heard(self, raw: object) -> None:
        decoded = decode(raw) if isinstance(raw, str | bytes) else None
        if decoded is None or decoded[0] == self._origin:
            return
        event = decoded[1]
        if not all(wanted(event) for wanted in self._wanted):
            return  # not a notice this replica's clients are told of (its capabilities say so)
        await self._local.publish(event)
        for hook in self._elsewhere:
            if self._tasks is not None:
                self._tasks.start_soon(_guarded, hook, event)


async def _guarded(hook: Elsewhere, event: ServerEvent) -> None:
    # The hooks run in the bus's own task group: one that raised would end the bus, and the server with it.
    try:
        await hook(event)
    except Exception:
        log.exception("a hook for another replica's change notice failed")
