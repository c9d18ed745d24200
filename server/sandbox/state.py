"""The emulator's world: accounts, quotas, snapshots, rate limits, faults and counters.

Tests drive it directly (set a quota, expire tokens, inject a 502, cut a stream) and read
its counters to assert what did or did not reach the "upstream". The HTTP apps only read
and change it under `lock`, because uvicorn serves them from another thread.

By default the world lives in this process. Given a world file (`--sandbox` does), what an
upstream remembers (tokens, quota usage, rate-limit windows, snapshots) lives there instead,
shared by every process that opens the same file (server/sandbox/world.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
import sqlite3
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from server.clock import Clock, SystemClock
from server.sandbox import catalog
from server.sandbox.records import Fault, Quota, RateRule, RateVerdict, RateWindow, RequestRecord, Workspace
from server.sandbox.variants import Variants
from server.sandbox.world import WorldFile, WorldUnusable

log = logging.getLogger(__name__)

# NeuralSnap's three documented rate models (docs/upstream-contract.md, "three pages, three models").
# The rate-limits page: per key and endpoint, per minute, with a per-second burst; (limit, burst) by plan.
ENDPOINT_LIMITS: dict[str, dict[str, tuple[int, int]]] = {
    "free": {"read": (60, 10), "write": (30, 5), "search": (30, 5), "crystallize": (10, 2), "memories": (60, 10)},
    "pro": {"read": (300, 30), "write": (120, 20), "search": (120, 20), "crystallize": (60, 10), "memories": (300, 30)},
}

# Each request is served in its own task, so a context variable carries its arrival time.
_arrival: ContextVar[float] = ContextVar("emulator_arrival")


class EmulatorState:
    """Everything the emulator knows; safe to read and change from tests while it serves."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        token_ttl_s: float = 14_399,
        world: Path | None = None,
        reset_world: bool = False,
        variants: Variants | None = None,
    ) -> None:
        """`world`: the file shared with other processes (`reset_world` empties it first); None keeps it here.

        `variants`: which reading of the vendors' disagreeing pages to serve (default: the contract's main text).
        """
        self.clock = clock or SystemClock()
        self.variants = variants or Variants()
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self.token_ttl_s = token_ttl_s
        self.clients: dict[str, str] = {catalog.DEMO_CLIENT_ID: catalog.DEMO_CLIENT_SECRET}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expires at)
        self.issued: deque[str] = deque(maxlen=10_000)  # recent tokens issued, revoked ones too (leak checks)
        self.presented: set[str] = set()  # every bearer token the API was shown, issued or not (planted-token checks)
        self.workspaces: dict[str, Workspace] = {}
        self.api_keys: dict[str, str] = {catalog.DEMO_API_KEY: "brain-sandbox"}  # key -> brain id
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.brains: dict[str, set[str]] = {catalog.DEMO_API_KEY: {catalog.SECOND_BRAIN}}  # key -> other brains
        self.crystallize_tokens = 0  # crystallize tokens spent (the profile page's monthly quota)
        self.received: deque[tuple[str, Any]] = deque(maxlen=1000)  # (route, JSON body) of writes, for tests
        self.rate_limit = 100  # the hourly model's requests per window, and the per-minute model's
        self.rate_window_s = 3600.0  # the hourly model's window (tests shorten it)
        self.endpoint_limits: dict[str, tuple[int, int]] | None = None  # per-endpoint (limit, burst); None: the page's
        self.windows: dict[str, RateWindow] = {}  # per API key
        self.faults: dict[str, list[Fault]] = {}
        self.latency_s: dict[str, float] = {}
        self.requests: Counter[str] = Counter()
        self.responses: Counter[tuple[str, int]] = Counter()
        self.unrouted: Counter[str] = Counter()  # path -> requests the gateway answered 404 for: no such route
        self.sent_bytes: Counter[str] = Counter()  # route -> body bytes of `flood_bytes` answers the client took
        # Bounded, so a sandbox that runs for days keeps flat memory.
        self.log: deque[RequestRecord] = deque(maxlen=100_000)
        self.words_charged = 0
        self.words_by_client: Counter[str] = Counter()  # client id -> words charged to its tokens (this process's)
        self.streams_closed_early = 0
        self.streams_completed = 0
        self.pings_sent = 0  # keep-alive comments sent by stalled streams
        self.active_streams = 0
        self.chunk_times: deque[float] = deque(maxlen=100_000)  # when each content chunk was sent (benchmarks)
        self.max_concurrent_streams = 0
        self._world = self._open_world(world, reset_world) if world is not None else None
        self.add_workspace(catalog.MARKETING_WORKSPACE, "Marketing Team", plan="business")

    # --- the world file -----------------------------------------------------------------------

    @staticmethod
    def _open_world(path: Path, reset: bool) -> WorldFile | None:
        try:
            return WorldFile(path, reset=reset)
        except WorldUnusable as exc:
            log.warning("%s; keeping the sandbox world in this process only (--sandbox-reset starts it afresh)", exc)
            return None

    @contextlib.contextmanager
    def _shared(self) -> Iterator[WorldFile | None]:
        """The world file, if any. Should it fail mid-run: one warning, and this process keeps its own world
        from then on (the block's exception is swallowed, so the caller goes on to its in-process path)."""
        try:
            yield self._world
        except sqlite3.Error as exc:
            log.warning("the sandbox world failed (%s); keeping the sandbox world in this process only", exc)
            self.close()

    def close(self) -> None:
        """Close the world file (its owner does, once nothing serves from it)."""
        with self.lock:
            if self._world is not None:
                self._world.close()
                self._world = None

    @property
    def shared(self) -> bool:
        """Whether the world lives in a file other processes share."""
        return self._world is not None

    # --- set-up and control, for tests and the sandbox seed ---------------------------------

    def add_workspace(
        self,
        workspace_id: str,
        name: str,
        *,
        plan: str = "business",
        monthly: int = 200_000,
        daily: int = 20_000,
        used: int = 0,
        used_daily: int = 0,
    ) -> Workspace:
        """A workspace and its starting quotas; a world file keeps any usage it already has for it."""
        with self.lock:
            ws = Workspace(workspace_id, name, plan)
            today = self.today()
            ws.quotas["tokens"] = Quota("tokens", monthly, daily, used, used_daily, daily_refreshed=today)
            ws.quotas["images"] = Quota("images", limit=100, limit_daily=20, daily_refreshed=today)
            self.workspaces[workspace_id] = ws
            return ws

    def set_quota(self, workspace_id: str, usage_type: str = "tokens", **changes: Any) -> Quota:
        """Change fields of a quota, e.g. `used_daily=20_000` or `fair_use_reached=True`.

        Raises:
            KeyError: no such workspace or usage type.
            AttributeError: a field a quota does not have.
        """

        def apply(quota: Quota) -> None:
            for name, value in changes.items():
                setattr(quota, name, value)

        with self.lock:
            quota = self.workspaces[workspace_id].quotas[usage_type]
            for name in changes:
                if not hasattr(quota, name):
                    raise AttributeError(name)
            with self._shared() as world:
                if world is not None:
                    return world.change_quota(workspace_id, quota, apply)
            apply(quota)
            return quota

    def expire_tokens(self) -> None:
        """Make every issued token expired, as if its four hours had passed upstream."""
        with self.lock:
            now = self.clock.now()
            with self._shared() as world:
                if world is not None:
                    world.expire_tokens(now)
                    return
            self.tokens = {t: (client, now - 1) for t, (client, _) in self.tokens.items()}

    def revoke_tokens(self) -> None:
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    world.revoke_tokens()
                    return
            self.tokens.clear()

    def set_rate_limit(self, limit: int, window_s: float) -> None:
        with self.lock:
            self.rate_limit, self.rate_window_s = limit, window_s
            self.windows.clear()
            with self._shared() as world:
                if world is not None:
                    world.clear_windows()

    def inject(self, route: str, fault: Fault) -> None:
        """Queue a fault for the next `fault.times` requests to `route` (a counter name)."""
        with self.lock:
            self.faults.setdefault(route, []).append(fault)

    def wait_for(self, route: str, count: int, timeout: float = 10.0) -> bool:
        """Block until `count` requests to `route` have arrived (for tests, from a worker thread)."""
        return self.wait_until(lambda: self.requests[route] >= count, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate()` holds after some request arrived or a stream ended; False on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def count(self, route: str) -> int:
        with self.lock:
            return self.requests[route]

    def count_status(self, route: str, status: int) -> int:
        with self.lock:
            return self.responses[(route, status)]

    # --- used by the HTTP apps --------------------------------------------------------------

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock.now(), UTC).date()

    def arrived(self, route: str) -> None:
        _arrival.set(self.clock.now())
        with self._changed:
            self.requests[route] += 1
            self._changed.notify_all()

    def record(self, route: str, status: int) -> None:
        """Log the answer to a request, stamped with the time the request arrived."""
        with self.lock:
            self.responses[(route, status)] += 1
            self.log.append(RequestRecord(_arrival.get(self.clock.now()), route, status))

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(route)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def issue_token(self, client_id: str) -> str:
        with self.lock:
            token = "nf_at_" + secrets.token_urlsafe(24)
            now = self.clock.now()
            self.issued.append(token)
            with self._shared() as world:
                if world is not None:
                    world.add_token(token, client_id, now + self.token_ttl_s, now)
                    return token
            self.tokens = {t: entry for t, entry in self.tokens.items() if entry[1] > now}  # forget expired ones
            self.tokens[token] = (client_id, now + self.token_ttl_s)
            return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            self.presented.add(token)
            with self._shared() as world:
                if world is not None:
                    expires_at = world.token_expiry(token)
                    return expires_at is not None and self.clock.now() < expires_at
            entry = self.tokens.get(token)
            return entry is not None and self.clock.now() < entry[1]

    def quota(self, workspace_id: str, usage_type: str) -> Quota:
        """A quota with its daily count reset if a UTC midnight has passed since its last refresh."""
        return self._change_quota(workspace_id, usage_type, lambda _: None)

    def charge(self, workspace_id: str, words: int, client_id: str | None = None) -> None:
        def spend(quota: Quota) -> None:
            quota.used += words
            quota.used_daily += words

        with self.lock:
            self._change_quota(workspace_id, "tokens", spend)
            self.words_charged += words
            if client_id is not None:
                self.words_by_client[client_id] += words

    def token_client(self, token: str) -> str | None:
        """The client id a token was issued to (in this process; None for one it did not issue)."""
        with self.lock:
            entry = self.tokens.get(token)
            return entry[0] if entry is not None else None

    def _change_quota(self, workspace_id: str, usage_type: str, change: Callable[[Quota], None]) -> Quota:
        """Read-modify-write of one quota, its daily count refreshed first: in the world file, one transaction."""
        today = self.today()

        def refresh_then_change(quota: Quota) -> None:
            if quota.daily_refreshed != today:
                quota.used_daily, quota.daily_refreshed = 0, today
            change(quota)

        with self.lock:
            quota = self.workspaces[workspace_id].quotas[usage_type]
            with self._shared() as world:
                if world is not None:
                    return world.change_quota(workspace_id, quota, refresh_then_change)
            refresh_then_change(quota)
            return quota

    def rate_rule(self, key: str, bucket: str) -> RateRule:
        """How a request of `key` to an endpoint of `bucket` (read, write, search, crystallize) is counted.

        hourly: one window per key (`rate_limit` per `rate_window_s`); per_minute: one window per key,
        `rate_limit` per minute; per_endpoint: a window per key and endpoint, per minute, with the page's
        per-second burst. A "minute" is `variants.time_scale` times as long; the burst stays per (real) second.
        """
        v = self.variants
        if v.rate_model == "per_endpoint":
            table = self.endpoint_limits or ENDPOINT_LIMITS["pro" if v.plan in ("pro", "business") else "free"]
            limit, burst = table.get(bucket, table["read"])
            return RateRule(f"{key}\0{bucket}", limit, 60.0 * v.time_scale, burst, 1.0)
        if v.rate_model == "per_minute":
            return RateRule(key, self.rate_limit, 60.0 * v.time_scale)
        return RateRule(key, self.rate_limit, self.rate_window_s)

    def rate_window(self, key: str, window_s: float | None = None) -> RateWindow:
        """The key's current window; windows are fixed, aligned to multiples of their length (e.g. the hour)."""
        with self.lock:
            now = self.clock.now()
            window = self.windows.get(key)
            if window is None or now >= window.reset_at:
                window = self.windows[key] = RateWindow(reset_at=_next_reset(now, window_s or self.rate_window_s))
            return window

    def spend_rate(self, key: str, *, spend: bool, bucket: str = "read") -> RateVerdict:
        """Pass one request of `key` to `bucket` through its rule, spending a send if it `spend`s and has room.

        The burst counts each request it lets through (each check one atomic step, so processes sharing the
        world count together); a request it refuses spends nothing of the window, nor does one the window refuses.
        """
        rule = self.rate_rule(key, bucket)
        with self.lock:
            now = self.clock.now()
            burst_over, burst_reset = False, 0.0
            if rule.burst is not None and spend:
                burst = rule.burst

                def count(used: int) -> bool:
                    nonlocal burst_over
                    burst_over = used >= burst
                    return not burst_over

                burst_reset, _ = self._spend_window(f"{rule.window_key}\0burst", rule.burst_s, now, count)
            over = False

            def take(used: int) -> bool:
                nonlocal over
                over = spend and not burst_over and used >= rule.limit
                return spend and not burst_over and not over

            reset_at, used = self._spend_window(rule.window_key, rule.window_s, now, take)
            return RateVerdict(rule, RateWindow(reset_at, used), over, burst_over, burst_reset)

    def _spend_window(self, key: str, window_s: float, now: float, take: Callable[[int], bool]) -> tuple[float, int]:
        """(reset, used) of `key`'s window of `window_s` after one more send if `take(used)` says so."""

        def spend(used: int) -> int:
            return used + 1 if take(used) else used

        with self._shared() as world:
            if world is not None:
                return world.spend_window(key, _next_reset(now, window_s), now, spend)
        window = self.rate_window(key, window_s)
        window.used = spend(window.used)
        return window.reset_at, window.used

    def add_snapshot(self, snapshot: dict[str, Any]) -> None:
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    world.add_snapshot(snapshot)
                    return
            self.snapshots[snapshot["id"]] = snapshot

    def replace_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Store a changed snapshot under its id (an update, by either verb)."""
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    world.replace_snapshot(snapshot)
                    return
            self.snapshots[snapshot["id"]] = snapshot

    def delete_snapshot(self, snapshot_id: str) -> bool:
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    return world.delete_snapshot(snapshot_id)
            return self.snapshots.pop(snapshot_id, None) is not None

    def snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    return world.snapshot(snapshot_id)
            return self.snapshots.get(snapshot_id)

    def snapshots_of(self, brain_id: str) -> list[dict[str, Any]]:
        """A brain's snapshots, newest first."""
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    return world.snapshots_of(brain_id)
            mine = [s for s in self.snapshots.values() if s["brain_id"] == brain_id]
        return sorted(mine, key=lambda s: s["created_at"], reverse=True)

    def snapshot_page(self, brain_id: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of a brain's snapshots, newest first, and how many it has."""
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    return world.snapshot_page(brain_id, offset, limit)
            mine = self.snapshots_of(brain_id)
            return mine[offset : offset + limit], len(mine)

    def snapshot_count(self) -> int:
        with self.lock:
            with self._shared() as world:
                if world is not None:
                    return world.snapshot_count()
            return len(self.snapshots)


def completion_words(messages: list[dict[str, Any]], model: str, max_words: int) -> list[str]:
    """The deterministic reply to `messages`: the same request always gets the same words."""
    digest = hashlib.sha256(repr((messages, model)).encode()).digest()
    sentences = [catalog.SENTENCES[b % len(catalog.SENTENCES)] for b in digest[: 2 + digest[0] % 4]]
    return " ".join(dict.fromkeys(sentences)).split()[:max_words]


def _next_reset(now: float, window_s: float) -> float:
    """The end of the window of `window_s` that `now` falls in; windows are aligned to multiples of their length."""
    return (math.floor(now / window_s) + 1) * window_s
