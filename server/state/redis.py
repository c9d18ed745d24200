"""State shared by every replica of a cluster: Redis or Valkey, through redis-py's asyncio client.

Each update is a WATCH/MULTI transaction: read the key, decide, write only if nobody wrote it
meanwhile, else decide again. Every key lives under the configured prefix and carries a TTL.
The schema version is part of every key (`flashsnap:v1:…`), so during a rolling upgrade that
changes it, old and new replicas keep apart instead of overwriting each other's documents.
"""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from server.state.store import KEEP, SCHEMA, Doc, Mutation, R, StoreUnavailable, decode, encode

MAX_CONFLICTS = 100  # a transaction that loses this many races in a row reports the store as unusable


def _glob_escape(text: str) -> str:
    """`text` matched literally by SCAN's glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def where(url: str) -> str:
    """The URL without user or password: what logs and errors may name."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    db = parts.path if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{host}{port}{db}"


class RedisStore:
    kind = "redis"
    shared = True
    degraded = False
    problem: str | None = None

    def __init__(self, url: str, *, prefix: str = "flashsnap:", timeout_s: float = 2.0) -> None:
        self._where = where(url)
        self._prefix = f"{prefix}v{SCHEMA}:"
        self._locks: dict[str, anyio.Lock] = {}
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
            retry_on_timeout=False,
        )

    async def get(self, key: str) -> Doc | None:
        try:
            raw = await self._redis.get(self._prefix + key)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return decode(raw)

    async def update(self, key: str, mutate: Mutation[R]) -> R:
        name = self._prefix + key
        # One update per key at a time from this process: its own calls queue here instead of
        # racing each other's transactions, so only other processes can make a transaction retry.
        lock = self._locks.setdefault(name, anyio.Lock())
        try:
            async with lock:
                return await self._transaction(name, mutate)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(name, None)

    async def _transaction(self, name: str, mutate: Mutation[R]) -> R:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for attempt in range(MAX_CONFLICTS):
                    try:
                        await pipe.watch(name)
                        change = mutate(decode(await pipe.get(name)))
                        if change.doc is KEEP:
                            await pipe.unwatch()  # type: ignore[no-untyped-call]
                            return change.result
                        pipe.multi()  # type: ignore[no-untyped-call]
                        if change.doc is None:
                            pipe.delete(name)
                        else:
                            assert isinstance(change.doc, dict)
                            pipe.set(name, encode(change.doc), px=max(1, int(change.ttl_s * 1000)))
                        await pipe.execute()
                        return change.result
                    except WatchError:
                        # Another process wrote the key first: decide again on what it wrote, after a
                        # short random pause, so that contenders do not collide again in lockstep.
                        await anyio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))  # noqa: S311 - jitter
        except RedisError as exc:
            raise self._unavailable(exc) from None
        raise StoreUnavailable(f"Redis at {self._where}: too much contention on one key")

    async def keys(self, prefix: str) -> list[str]:
        pattern = _glob_escape(self._prefix + prefix) + "*"
        try:
            found = [key async for key in self._redis.scan_iter(match=pattern, count=500)]
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return sorted({str(key)[len(self._prefix) :] for key in found})

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise self._unavailable(exc) from None

    def describe(self) -> str:
        return self._where

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _unavailable(self, exc: RedisError) -> StoreUnavailable:
        # The exception's own text can carry the URL it was given: name only the class.
        return StoreUnavailable(f"Redis at {self._where} failed ({type(exc).__name__})")
