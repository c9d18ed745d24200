"""The emulator's in-memory world: accounts, quotas, snapshots, rate limits, faults and counters.

Tests drive it directly (set a quota, expire tokens, inject a 502, cut a stream) and read
its counters to assert what did or did not reach the "upstream". The HTTP apps only read
and change it under `lock`, because uvicorn serves them from another thread.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from server.clock import Clock, SystemClock
from server.sandbox import catalog

# Each request is served in its own task, so a context variable carries its arrival time.
_arrival: ContextVar[float] = ContextVar("emulator_arrival")


@dataclass
class Quota:
    """One usage type's quota of one workspace, in the upstream's own field names."""

    usage_type: str
    limit: int
    limit_daily: int
    used: int = 0
    used_daily: int = 0
    bonus: int = 0
    spillover: int = 0
    daily_refreshed: date | None = None
    fair_use_reached: bool = False

    @property
    def available(self) -> int:
        return max(0, self.limit + self.bonus + self.spillover - self.used)

    @property
    def remaining_daily(self) -> int:
        return max(0, self.limit_daily - self.used_daily)


@dataclass
class Workspace:
    id: str
    name: str
    plan: str
    quotas: dict[str, Quota] = field(default_factory=dict)


@dataclass
class Fault:
    """What the next matching request meets instead of a normal answer."""

    status: int | None = None  # answer with this status and a generic error body
    message: str | None = None  # with status: the error body's text (a proxy's or a bug's: any size, any words)
    # A 200 that is broken; with status, "wrong_type" is an HTML error page (a proxy's) instead of JSON.
    body: Literal["malformed", "wrong_type", "oversized", "reset"] | None = None
    stall_after_chunks: int | None = None  # stream: after N content chunks send only ": ping" comments
    ping_every_s: float = 0.05  # with stall_after_chunks: how often the keep-alive comment comes
    cut_after_chunks: int | None = None  # stream: close the connection after N content chunks
    retry_after_s: int | None = None  # with status 429: the wait it names
    retry_after_header: bool = True  # with status 429: False names the wait only in the body
    times: int = 1


@dataclass
class RequestRecord:
    at: float
    route: str
    status: int


@dataclass
class RateWindow:
    reset_at: float
    used: int = 0


class EmulatorState:
    """Everything the emulator knows; safe to read and change from tests while it serves."""

    def __init__(self, clock: Clock | None = None, *, token_ttl_s: float = 14_399) -> None:
        self.clock = clock or SystemClock()
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self.token_ttl_s = token_ttl_s
        self.clients: dict[str, str] = {catalog.DEMO_CLIENT_ID: catalog.DEMO_CLIENT_SECRET}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expires at)
        self.issued: deque[str] = deque(maxlen=10_000)  # recent tokens issued, revoked ones too (leak checks)
        self.workspaces: dict[str, Workspace] = {}
        self.api_keys: dict[str, str] = {catalog.DEMO_API_KEY: "brain-sandbox"}  # key -> brain id
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.rate_limit = 100
        self.rate_window_s = 3600.0
        self.windows: dict[str, RateWindow] = {}  # per API key
        self.faults: dict[str, list[Fault]] = {}
        self.latency_s: dict[str, float] = {}
        self.requests: Counter[str] = Counter()
        self.responses: Counter[tuple[str, int]] = Counter()
        # Bounded, so a sandbox that runs for days keeps flat memory.
        self.log: deque[RequestRecord] = deque(maxlen=100_000)
        self.words_charged = 0
        self.streams_closed_early = 0
        self.streams_completed = 0
        self.pings_sent = 0  # keep-alive comments sent by stalled streams
        self.active_streams = 0
        self.chunk_times: deque[float] = deque(maxlen=100_000)  # when each content chunk was sent (benchmarks)
        self.max_concurrent_streams = 0
        self.add_workspace(catalog.MARKETING_WORKSPACE, "Marketing Team", plan="business")

    # --- set-up and control, for tests and the sandbox seed ---------------------------------

    def add_workspace(
        self,
        workspace_id: str,
        name: str,
        *,
        plan: str = "business",
        monthly: int = 200_000,
        daily: int = 20_000,
    ) -> Workspace:
        with self.lock:
            ws = Workspace(workspace_id, name, plan)
            ws.quotas["tokens"] = Quota("tokens", limit=monthly, limit_daily=daily, daily_refreshed=self.today())
            ws.quotas["images"] = Quota("images", limit=100, limit_daily=20, daily_refreshed=self.today())
            self.workspaces[workspace_id] = ws
            return ws

    def set_quota(self, workspace_id: str, usage_type: str = "tokens", **changes: Any) -> Quota:
        """Change fields of a quota, e.g. `used_daily=20_000` or `fair_use_reached=True`."""
        with self.lock:
            quota = self.workspaces[workspace_id].quotas[usage_type]
            for name, value in changes.items():
                if not hasattr(quota, name):
                    raise AttributeError(name)
                setattr(quota, name, value)
            return quota

    def expire_tokens(self) -> None:
        """Make every issued token expired, as if its four hours had passed upstream."""
        with self.lock:
            now = self.clock.now()
            self.tokens = {t: (client, now - 1) for t, (client, _) in self.tokens.items()}

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def set_rate_limit(self, limit: int, window_s: float) -> None:
        with self.lock:
            self.rate_limit, self.rate_window_s = limit, window_s
            self.windows.clear()

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
            self.tokens = {t: entry for t, entry in self.tokens.items() if entry[1] > now}  # forget expired ones
            self.tokens[token] = (client_id, now + self.token_ttl_s)
            self.issued.append(token)
            return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            entry = self.tokens.get(token)
            return entry is not None and self.clock.now() < entry[1]

    def quota(self, workspace_id: str, usage_type: str) -> Quota:
        """A quota with its daily count reset if a UTC midnight has passed since its last refresh."""
        with self.lock:
            quota = self.workspaces[workspace_id].quotas[usage_type]
            today = self.today()
            if quota.daily_refreshed != today:
                quota.used_daily, quota.daily_refreshed = 0, today
            return quota

    def charge(self, workspace_id: str, words: int) -> None:
        with self.lock:
            quota = self.quota(workspace_id, "tokens")
            quota.used += words
            quota.used_daily += words
            self.words_charged += words

    def rate_window(self, key: str) -> RateWindow:
        """The key's current window; windows are fixed, aligned to multiples of their length (e.g. the hour)."""
        with self.lock:
            now = self.clock.now()
            window = self.windows.get(key)
            if window is None or now >= window.reset_at:
                reset_at = (math.floor(now / self.rate_window_s) + 1) * self.rate_window_s
                window = self.windows[key] = RateWindow(reset_at=reset_at)
            return window


def completion_words(messages: list[dict[str, Any]], model: str, max_words: int) -> list[str]:
    """The deterministic reply to `messages`: the same request always gets the same words."""
    digest = hashlib.sha256(repr((messages, model)).encode()).digest()
    sentences = [catalog.SENTENCES[b % len(catalog.SENTENCES)] for b in digest[: 2 + digest[0] % 4]]
    return " ".join(dict.fromkeys(sentences)).split()[:max_words]
