"""State shared by every replica of a cluster: Redis or Valkey, through redis-py's asyncio client.

Each update reads the key, decides, and writes with an atomic compare-and-set (a Lua script):
the write lands only if the key still holds what was read, else the update decides again on
what another process wrote. A decision to keep the document costs one GET; a write, a GET and
one script call. Every key lives under the configured prefix and carries a TTL.
The schema version is part of every key (`flashsnap:v1:…`), so during a rolling upgrade that
changes it, old and new replicas keep apart instead of overwriting each other's documents.
"""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.state.store import KEEP, SCHEMA, Doc, Mutation, R, StoreUnavailable, decode, encode

MAX_CONFLICTS = 100  # an update that loses this many races in a row reports the store as unusable

# KEYS[1]: the document; ARGV: what was read ("" when absent), what to write ("" deletes), TTL in ms.
# Documents are JSON objects, never "", so "" can stand for "absent".
COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


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
        self._compare_and_set = self._redis.register_script(COMPARE_AND_SET)  # EVALSHA, loaded once

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
            for attempt in range(MAX_CONFLICTS):
                read = await self._redis.get(name)
                change = mutate(decode(read))
                if change.doc is KEEP:
                    return change.result
                written = ""
                if change.doc is not None:
                    assert isinstance(change.doc, dict)
                    written = encode(change.doc)
                ttl_ms = max(1, int(change.ttl_s * 1000))
                if await self._compare_and_set(keys=[name], args=[read or "", written, ttl_ms]):
                    return change.result
                # Another process wrote the key first: decide again on what it wrote, after a short
                # random pause, so that contenders do not collide again in lockstep.
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
