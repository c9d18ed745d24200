"""Word quotas: the verdict on a quota, and the short-lived book that lets generate refuse up front."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import anyio

from server.clock import Clock
from server.errors import FairUseReached, QuotaExhausted
from server.upstream.neuroflash import NeuroflashClient, Quota

TEXT_USAGE = "tokens"  # neuroflash's usage type for words of text


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


class QuotaBook:
    """The last quotas seen per workspace, kept `ttl_s` seconds and updated by each generation."""

    def __init__(self, client: NeuroflashClient, clock: Clock, *, ttl_s: float = 30.0) -> None:
        self._client = client
        self._clock = clock
        self._ttl_s = ttl_s
        self._seen: dict[str, tuple[float, list[Quota]]] = {}
        self._lock = anyio.Lock()

    async def quotas(self, workspace_id: str, *, fresh: bool = False) -> list[Quota]:
        if not fresh and (cached := self._cached(workspace_id)) is not None:
            return cached
        async with self._lock:  # concurrent calls on a cold cache make one request, not one each
            if not fresh and (cached := self._cached(workspace_id)) is not None:
                return cached
            quotas = await self._client.quotas(workspace_id)
            self._seen[workspace_id] = (self._clock.now(), quotas)
            return quotas

    def _cached(self, workspace_id: str) -> list[Quota] | None:
        seen = self._seen.get(workspace_id)
        return seen[1] if seen is not None and self._clock.now() - seen[0] < self._ttl_s else None

    async def admit(self, workspace_id: str) -> None:
        """Raise the refusal, before any chat request is sent, when the text quota cannot serve one."""
        text = next((q for q in await self.quotas(workspace_id) if q.usage_type_key == TEXT_USAGE), None)
        if text is not None and not (verdict := judge(text, self._clock.now())).can_generate:
            raise refusal(verdict, workspace_id)

    def spend(self, workspace_id: str, words: int) -> None:
        """Count a finished generation's words against the cached quota."""
        seen = self._seen.get(workspace_id)
        if seen is None:
            return
        updated = [
            q.model_copy(
                update={
                    "used_amount": q.used_amount + words,
                    "used_amount_daily": q.used_amount_daily + words,
                    "available_amount": max(0, q.available_amount - words),
                }
            )
            if q.usage_type_key == TEXT_USAGE
            else q
            for q in seen[1]
        ]
        self._seen[workspace_id] = (seen[0], updated)

    async def explain(self, workspace_id: str, upstream: QuotaExhausted) -> QuotaExhausted | FairUseReached:
        """After an upstream QUOTA_EXCEEDED: look the quota up afresh to say which one and when."""
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
