"""State shared by every replica of a cluster: Redis or Valkey, through redis-py's asyncio client.

Each update decides on the document and writes with an atomic compare-and-set (a Lua script):
the write lands only if the key still holds what the decision was based on, else the script
answers with what it holds and the update decides again. The decision is first made on the
document as this process last read or wrote it, so a write usually costs one round trip; a
decision to keep the document is confirmed on a fresh GET, never on a remembered copy.
Every key lives under the configured prefix and carries a TTL. A mutation that is also a script (a gate's
decisions, `Scripted`) runs inside Redis instead: one EVALSHA reads, decides and writes, with no retries,
and publishes on the key's wake channel when its write may let a waiting call go (`changes`).
The schema version is part of every key (`flashsnap:v1:…`), so during a rolling upgrade that
changes it, old and new replicas keep apart instead of overwriting each other's documents.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import anyio
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from server.state.store import KEEP, SCHEMA, Doc, Mutation, R, Scripted, StoreUnavailable, decode, encode

MAX_CONFLICTS = 100  # an update that loses this many races in a row reports the store as unusable

MAX_REMEMBERED = 1_000  # documents remembered as last read or written (a process uses a handful)

# KEYS[1]: the document; ARGV: what it is assumed to hold ("" when absent), what to write ("" deletes),
# the TTL in ms. Returns {1} when written, else {0, what it holds} (nothing after 0 when absent), so
# a loser decides again without another round trip. Documents are JSON objects, never "".
COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return {0, current} end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return {1}
"""


def _glob_escape(text: str) -> str:
    """`text` matched literally by SCAN's glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def script_argv(mutate: Scripted[R], channel: str) -> tuple[float, list[str | int]]:
    """The time a scripted mutation runs at, and its script's ARGV: the step, the time and its arguments (as
    JSON, floats written to read back exactly), the document's TTL in ms, and the channel its wake goes to."""
    now, args = mutate.args()
    ttl_ms = max(1, int(mutate.ttl_s * 1000))
    return now, [mutate.step, repr(now), json.dumps(args, allow_nan=False), ttl_ms, channel]


def _said(data: object) -> Doc:
    """What an announcement said: a JSON object, or nothing (anyone may publish on a channel)."""
    try:
        found = json.loads(data) if isinstance(data, str) and len(data) <= 4_096 else None
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


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
    announces = True
    degraded = False
    problem: str | None = None

    def __init__(self, url: str, *, prefix: str = "flashsnap:", timeout_s: float = 2.0) -> None:
        self._where = where(url)
        self._prefix = f"{prefix}v{SCHEMA}:"
        self._locks: dict[str, anyio.Lock] = {}
        self._last: dict[str, str | None] = {}  # key -> the document as this process last read or wrote it
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
            retry_on_timeout=False,
        )
        self._compare_and_set = self._redis.register_script(COMPARE_AND_SET)  # EVALSHA, loaded once
        self._scripts: dict[str, AsyncScript] = {}  # source -> script: called by SHA, loaded again on NOSCRIPT
        self._url, self._timeout_s = url, timeout_s

    async def get(self, key: str) -> Doc | None:
        """The document under `key`, or None.

        Raises:
            StoreUnavailable: Redis failed (naming its host, never the URL).
        """
        try:
            raw = await self._redis.get(self._prefix + key)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return decode(raw)

    async def update(self, key: str, mutate: Mutation[R]) -> R:
        name = self._prefix + key
        if isinstance(mutate, Scripted):
            return await self._scripted(name, mutate)
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
            read, fresh = (self._last[name], False) if name in self._last else (await self._read(name), True)
            for attempt in range(MAX_CONFLICTS):
                change = mutate(decode(read))
                if change.doc is KEEP:
                    if fresh:
                        return change.result
                    read, fresh = await self._read(name), True  # keep only on what the key holds now
                    continue
                written = ""
                if change.doc is not None:
                    assert isinstance(change.doc, dict)
                    written = encode(change.doc)
                ttl_ms = max(1, int(change.ttl_s * 1000))
                guessed = not fresh
                answer = await self._compare_and_set(keys=[name], args=[read or "", written, ttl_ms])
                if answer[0] == 1:
                    self._remember(name, written or None)
                    return change.result
                read, fresh = (str(answer[1]) if len(answer) > 1 else None), True
                self._remember(name, read)
                if not guessed:
                    # Another process wrote the key first: pause briefly at random before deciding
                    # again, so that contenders do not collide again in lockstep.
                    await anyio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))  # noqa: S311 - jitter
        except RedisError as exc:
            self._last.pop(name, None)
            raise self._unavailable(exc) from None
        raise StoreUnavailable(f"Redis at {self._where}: too much contention on one key")

    async def _scripted(self, name: str, mutate: Scripted[R]) -> R:
        """Run a scripted mutation inside Redis: one EVALSHA decides and writes, whoever else is writing."""
        script = self._scripts.get(mutate.script)
        if script is None:
            script = self._scripts[mutate.script] = self._redis.register_script(mutate.script)
        now, argv = script_argv(mutate, self._wake_channel(name))
        try:
            answer = await script(keys=[name], args=argv)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        finally:
            self._last.pop(name, None)  # the compare-and-set path's copy is stale now
        reply = json.loads(answer)
        return mutate.read(reply["r"], reply["d"], now)

    def _wake_channel(self, name: str) -> str:
        return f"{self._prefix}wake:{name[len(self._prefix) :]}"

    async def changes(self, prefix: str) -> AsyncIterator[tuple[str, Doc]]:
        """The keys under `prefix` whose scripts announced a change, with what they said, as they come (one
        subscription, no polling); a message that is not a JSON object says nothing (an empty document).

        Raises:
            StoreUnavailable: Redis failed.
        """
        channels = f"{self._prefix}wake:"
        # A connection of its own without a read timeout: a subscription waits as long as nothing happens.
        listener = aioredis.Redis.from_url(self._url, socket_connect_timeout=self._timeout_s, decode_responses=True)
        try:
            async with listener.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.psubscribe(_glob_escape(channels + prefix) + "*")
                async for message in pubsub.listen():
                    channel = str(message.get("channel") or "")
                    if channel.startswith(channels):
                        yield channel[len(channels) :], _said(message.get("data"))
        except RedisError as exc:
            raise self._unavailable(exc) from None
        finally:
            await listener.aclose()

    async def _read(self, name: str) -> str | None:
        found = await self._redis.get(name)
        raw = None if found is None else str(found)
        self._remember(name, raw)
        return raw

    def _remember(self, name: str, raw: str | None) -> None:
        if len(self._last) >= MAX_REMEMBERED and name not in self._last:
            self._last.clear()
        self._last[name] = raw

    async def keys(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted.

        Raises:
            StoreUnavailable: Redis failed.
        """
        pattern = _glob_escape(self._prefix + prefix) + "*"
        try:
            found = [key async for key in self._redis.scan_iter(match=pattern, count=500)]
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return sorted({str(key)[len(self._prefix) :] for key in found})

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            StoreUnavailable: it does not.
        """
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
