"""Word quotas: the verdict on a quota, and the short-lived book that lets generate refuse up front."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import anyio
from pydantic import ValidationError

from server.clock import Clock
from server.errors import FairUseReached, QuotaExhausted, UpstreamError
from server.neuroflash.client import NeuroflashClient
from server.neuroflash.wire import Quota
from server.state.memory import MemoryStore
from server.state.store import Change, Doc, Store

TEXT_USAGE = "tokens"  # neuroflash's usage type for words of text
# A refusal older than this is checked against the upstream (one quota read) before it refuses a generate:
# an admin may have restored the quota, or another reason (fair use) may now be the one that blocks.
VERDICT_RECHECK_S = 5.0


@dataclass(frozen=True)
class Verdict:
    can_generate: bool
    reason: str | None
    daily_remaining: int
    daily_used: int
    next_daily_reset: datetime
    period: str | None = None  # "daily" or "monthly", when that quota is what blocks


def next_midnight_utc(now: float) -> datetime:
    today = datetime.fromtimestamp(now, UTC).date()
    return datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)


def judge(quota: Quota, now: float) -> Verdict:
    """Whether a generation can succeed now, counting the daily reset at midnight UTC."""
    today: date = datetime.fromtimestamp(now, UTC).date()
    # A daily count last refreshed before today has been reset upstream, whatever it says.
    daily_used = quota.used_amount_daily if quota.daily_refreshed in (None, today) else 0
    daily_remaining = max(0, quota.limit_amount_daily - daily_used)
    reset = next_midnight_utc(now)
    if quota.fair_use_limit_reached:
        return Verdict(False, "fair use limit reached", daily_remaining, daily_used, reset)
    if quota.available_amount <= 0:
        return Verdict(False, "monthly quota spent", daily_remaining, daily_used, reset, "monthly")
    if daily_remaining <= 0:
        return Verdict(False, f"daily quota spent until {reset.isoformat()}", 0, daily_used, reset, "daily")
    return Verdict(True, None, daily_remaining, daily_used, reset)


def refusal(verdict: Verdict, workspace_id: str) -> QuotaExhausted | FairUseReached:
    """The error a refused generation raises, saying which quota and when it resets."""
    if verdict.period is None:
        return FairUseReached(f"Workspace {workspace_id} has reached its fair-use limit.")
    if verdict.period == "daily":
        return QuotaExhausted(
            f"The daily word quota of workspace {workspace_id} is spent.",
            period="daily",
            resets_at=verdict.next_daily_reset,
        )
    return QuotaExhausted(
        f"The monthly word quota of workspace {workspace_id} is spent.",
        period="monthly",
        resets_at=None,
        hint="It renews with the plan's next billing period; ask the user to add words or wait. No words were spent.",
    )


def _text_verdict(quotas: list[Quota], now: float) -> Verdict | None:
    """The refusing verdict of the text quota, or None when it can serve a generation (or there is none)."""
    text = next((q for q in quotas if q.usage_type_key == TEXT_USAGE), None)
    if text is None or (verdict := judge(text, now)).can_generate:
        return None
    return verdict


def read_book(doc: Doc | None) -> tuple[float, list[Quota]] | None:
    """(seen at, quotas) of a quota-book document; None when absent or not of this format."""
    if doc is None:
        return None
    try:
        return float(doc["seen_at"]), [Quota.model_validate(q) for q in doc["quotas"]]
    except (KeyError, TypeError, ValueError, ValidationError):
        return None  # written by something else: ask the upstream


class QuotaBook:
    """The last quotas seen per workspace, kept `ttl_s` seconds and updated by each generation.

    Kept in the state store, so a generation the quota cannot pay for is refused up front
    whichever process receives it, and words spent in one process count in all.
    """

    def __init__(
        self, client: NeuroflashClient, clock: Clock, *, store: Store | None = None, key: str = "quota",
        ttl_s: float = 30.0,
    ) -> None:  # fmt: skip
        self._client = client
        self._clock = clock
        self._store: Store = store or MemoryStore(clock)
        self._key = key
        self._ttl_s = ttl_s
        self._lock = anyio.Lock()

    async def quotas(self, workspace_id: str, *, fresh: bool = False) -> list[Quota]:
        if not fresh and (cached := await self._cached(workspace_id)) is not None:
            return cached
        async with self._lock:  # concurrent calls on a cold cache make one request, not one each
            if not fresh and (cached := await self._cached(workspace_id)) is not None:
                return cached
            quotas = await self._client.quotas(workspace_id)
            seen = {"seen_at": self._clock.now(), "quotas": [q.model_dump(mode="json") for q in quotas]}
            await self._store.update(self._name(workspace_id), lambda _: Change(None, seen, self._ttl_s))
            return quotas

    def _name(self, workspace_id: str) -> str:
        return f"{self._key}:{workspace_id}"

    async def _cached(self, workspace_id: str) -> list[Quota] | None:
        seen = await self._seen(workspace_id)
        return None if seen is None else seen[1]

    async def _seen(self, workspace_id: str) -> tuple[float, list[Quota]] | None:
        seen = read_book(await self._store.get(self._name(workspace_id)))
        if seen is None or not 0 <= self._clock.now() - seen[0] < self._ttl_s:
            return None
        return seen

    async def admit(self, workspace_id: str) -> None:
        """Refuse, before any chat request is sent, a generation the text quota cannot serve.

        A refusal read from the book more than `VERDICT_RECHECK_S` old is confirmed with one quota
        read first, so no process goes on refusing after an admin restored the quota.

        Raises:
            QuotaExhausted: the daily or monthly word quota is spent (confirmed, when the book was old).
            FairUseReached: the workspace is blocked for fair use.
            FlashsnapError: the quota could not be read (its subclass says why).
        """  # noqa: DOC501 - `raise refusal(…)` raises one of the two named here
        seen = await self._seen(workspace_id)
        quotas = seen[1] if seen is not None else await self.quotas(workspace_id)
        verdict = _text_verdict(quotas, self._clock.now())
        if verdict is not None and seen is not None and self._clock.now() - seen[0] > VERDICT_RECHECK_S:
            verdict = _text_verdict(await self.quotas(workspace_id, fresh=True), self._clock.now())
        if verdict is not None:
            raise refusal(verdict, workspace_id)

    async def spend(self, workspace_id: str, words: int) -> None:
        """Count a finished generation's words against the cached quota, for every process."""

        def count(doc: Doc | None) -> Change[None]:
            if doc is None or not isinstance(doc.get("quotas"), list):
                return Change(None)
            for q in doc["quotas"]:
                if isinstance(q, dict) and q.get("usage_type_key") == TEXT_USAGE:
                    q["used_amount"] = int(q.get("used_amount", 0)) + words
                    q["used_amount_daily"] = int(q.get("used_amount_daily", 0)) + words
                    q["available_amount"] = max(0, int(q.get("available_amount", 0)) - words)
            left = self._ttl_s - (self._clock.now() - float(doc.get("seen_at", 0)))
            return Change(None, doc, max(0.001, left)) if left > 0 else Change(None)

        await self._store.update(self._name(workspace_id), count)

    async def explain(self, workspace_id: str, upstream: UpstreamError) -> UpstreamError:
        """After an upstream 429 or 403: look the quota up afresh to say which quota (and when), or fair use.

        Returns the refusal the quota explains, else `upstream` itself (also when the quota cannot be read).
        """
        try:
            quotas = await self.quotas(workspace_id, fresh=True)
        except Exception:
            return upstream
        text = next((q for q in quotas if q.usage_type_key == TEXT_USAGE), None)
        if text is None or (verdict := judge(text, self._clock.now())).can_generate:
            return upstream
        refused = refusal(verdict, workspace_id)
        refused.request_id = upstream.request_id
        return refused
