"""Choosing and opening the state store from plain settings (this layer imports no configuration)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from server.clock import Clock
from server.state.fallback import FallbackStore
from server.state.memory import MemoryStore
from server.state.sqlite import SQLiteStore
from server.state.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

StoreKind = Literal["sqlite", "memory", "redis"]


def default_state_dir() -> Path:
    """The platform's user cache directory for flashsnap-mcp (~/.cache/flashsnap-mcp on Linux)."""
    return Path(platformdirs.user_cache_dir("flashsnap-mcp", appauthor=False))


class StoreRefused(Exception):
    """A store that was asked for explicitly cannot be used, and the server must not start without it."""


@dataclass(frozen=True)
class StoreHealth:
    store: str  # what is in use: memory, sqlite or redis
    shared: bool  # whether other processes see this state
    where: str
    reachable: bool
    degraded: bool  # a shared store that failed: calls go on with process-local state
    problem: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "store": self.store,
            "shared": self.shared,
            "where": self.where,
            "reachable": self.reachable,
            "degraded": self.degraded,
            "problem": self.problem,
        }


async def open_store(
    kind: StoreKind, clock: Clock, *, state_dir: Path | None = None, redis_url: str | None = None,
    redis_prefix: str = "flashsnap:",
) -> Store:  # fmt: skip
    """The store asked for, checked once.

    SQLite that cannot be used falls back to memory with one warning (a stdio client must never see a crash).

    Raises:
        StoreRefused: Redis was asked for and does not answer; the server must not start on its own state.
    """
    if kind == "memory":
        return MemoryStore(clock)
    if kind == "redis":
        assert redis_url is not None
        from server.state.redis import RedisStore  # redis-py costs ~65 ms to import: only when it is used

        store = RedisStore(redis_url, prefix=redis_prefix)
        try:
            await store.ping()
        except StoreUnavailable as exc:
            await store.aclose()
            raise StoreRefused(f"{exc}: check FLASHSNAP_REDIS_URL and that the server is up") from None
        return FallbackStore(store, clock)
    sqlite = SQLiteStore.in_directory(state_dir or default_state_dir(), clock)
    try:
        await sqlite.ping()
    except StoreUnavailable as exc:
        log.warning("%s; keeping state in this process only (set FLASHSNAP_STATE_DIR to fix)", exc)
        return MemoryStore(clock, problem=str(exc))
    except Exception as exc:  # a platform we did not foresee: state in the process beats no server at all
        what = f"the state database {sqlite.describe()} could not be opened ({type(exc).__name__})"
        log.warning("%s; keeping state in this process only (set FLASHSNAP_STATE_DIR to fix)", what, exc_info=True)
        with contextlib.suppress(Exception):
            await sqlite.aclose()
        return MemoryStore(clock, problem=what)
    return FallbackStore(sqlite, clock)


async def health(store: Store) -> StoreHealth:
    """Whether the store answers now, and whether calls currently run on process-local state."""
    problem = store.problem
    try:
        await store.ping()
        reachable = True
    except StoreUnavailable as exc:
        reachable, problem = False, str(exc)
    return StoreHealth(store.kind, store.shared, store.describe(), reachable, store.degraded or not reachable, problem)
