"""The emulator's records: quotas, workspaces, faults, request records and rate windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal


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
    # With status, the request's own credential quoted back in the message, as misbehaving servers do: an identity
    # server that echoes the form's `client_secret` in its error, a gateway that names the bearer token it refused.
    # `{client_secret}` and `{access_token}` in `message` are replaced by what the request carried.
    quotes_credential: bool = False
    # A 200 that is broken; with status, "wrong_type" is an HTML error page (a proxy's) instead of JSON.
    body: Literal["malformed", "wrong_type", "oversized", "reset"] | None = None
    stall_after_chunks: int | None = None  # stream: after N content chunks send only ": ping" comments
    ping_every_s: float = 0.05  # with stall_after_chunks: how often the keep-alive comment comes
    cut_after_chunks: int | None = None  # stream: close the connection after N content chunks
    retry_after_s: int | None = None  # with status 429: the wait it names
    retry_after_header: bool = True  # with status 429: False names the wait only in the body
    # A 200 whose body never ends in practice: this many bytes of JSON padding, streamed (a 600 MB token answer);
    # `EmulatorState.sent_bytes[route]` counts what the client took before it stopped reading.
    flood_bytes: int | None = None
    # stream: this many characters of text whatever max_tokens said (a runaway generation), then an error event.
    runaway_chars: int | None = None
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


@dataclass(frozen=True)
class RateRule:
    """How NeuralSnap counts one request: under which window, how many per window, and its burst."""

    window_key: str  # what the window is counted under: the API key, or the key and the endpoint
    limit: int
    window_s: float
    burst: int | None = None  # sends per `burst_s` at most (the rate-limits page's per-second burst)
    burst_s: float = 1.0


@dataclass(frozen=True)
class RateVerdict:
    """One request's passage through its rule: the window after it, and whether it was refused."""

    rule: RateRule
    window: RateWindow
    over: bool  # the window had no room
    burst_over: bool = False  # the window had room, but the burst did not
    burst_reset_at: float = 0.0
