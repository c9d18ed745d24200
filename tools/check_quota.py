"""check_quota: the word quotas of a workspace, and whether a generation can run now."""

from datetime import UTC, date, datetime

from pydantic import BaseModel, Field

from server.neuroflash.quota import TEXT_USAGE, judge
from server.tooling import spending
from server.tooling.spec import READ_ONLY, Cost, ToolContext, ToolSpec, WorkspaceId, runtime


class MonthlyQuota(BaseModel):
    limit: int
    used: int
    available: int = Field(description="What is left this month, bonus and spillover included.")
    bonus: int
    spillover: int


class DailyQuota(BaseModel):
    limit: int
    used: int
    remaining: int
    daily_refreshed: date | None = Field(description="The day (UTC) the daily count was last reset.")
    next_reset: datetime = Field(description="When the daily count resets next: midnight UTC.")


class UsageQuota(BaseModel):
    usage_type: str = Field(description="'tokens' counts words of text; 'images' counts images.")
    monthly: MonthlyQuota
    daily: DailyQuota
    fair_use_limit_reached: bool


class RateLimit(BaseModel):
    """The scheduler's view of one upstream credential."""

    scope: str = Field(description="'neuralsnap' or 'neuroflash'.")
    limit: int | None = Field(description="Requests allowed per window, as the upstream last said; null if unknown.")
    remaining: int | None = Field(description="Requests left in the current window; null if unknown.")
    resets_at: datetime | None = Field(description="When the current window resets.")
    blocked_until: datetime | None = Field(description="Set after a 429: nothing is sent before this time.")
    queued: int = Field(description="Calls waiting for their turn now.")
    estimated_wait_s: float = Field(description="About how long a new call would wait before it is sent.")


class Budget(BaseModel):
    """One of the caller's own budgets (the team file's), beside the workspace's quotas."""

    stock: str = Field(description="'words', 'crystallize' (tokens), 'searches' or 'generations_in_flight'.")
    period: str | None = Field(description="'day' (ends at midnight UTC) or 'month' (the calendar month, UTC).")
    spent: int = Field(description="What the caller spent this period (for generations: how many run now).")
    held: int = Field(description="What its calls under way hold until they settle.")
    limit: int | None = Field(description="Its cap; null when the team file sets none.")
    share: int | None = Field(
        description="Once the workspace's words are scarce: the most it may spend in all this period; else null."
    )
    resets_at: datetime | None = Field(description="When the period ends.")


class QuotaReport(BaseModel):
    workspace_id: str
    can_generate: bool = Field(description="Whether a text generation can run now.")
    reason: str | None = Field(description="Why not, when can_generate is false.")
    quotas: list[UsageQuota]
    rate_limits: list[RateLimit] = Field(description="What the server knows of each upstream's rate limit.")
    budgets: list[Budget] = Field(
        default_factory=list, description="The caller's own budgets and what it spent of them (named callers only)."
    )


async def check_quota(ctx: ToolContext, workspace_id: WorkspaceId = None) -> QuotaReport:
    """Show a neuroflash workspace's word quotas (monthly and daily) and whether text can be generated now.

    Call it before a long or repeated generation, or after generate reports a spent
    quota. The daily count resets at midnight UTC; the monthly one with the billing
    period. Each generation spends its words_used from both. rate_limits shows what the
    server knows of each upstream's request budget and how long a new call would wait.
    budgets shows the caller's own caps, if the team file sets any, and what it spent.
    """
    workspace_id, quotas = await runtime(ctx).neuroflash().quota_status(workspace_id)
    now = runtime(ctx).clock.now()
    report: list[UsageQuota] = []
    can_generate, reason = True, None
    for q in quotas:
        verdict = judge(q, now)
        if q.usage_type_key == TEXT_USAGE:
            can_generate, reason = verdict.can_generate, verdict.reason
        report.append(
            UsageQuota(
                usage_type=q.usage_type_key,
                monthly=MonthlyQuota(
                    limit=q.limit_amount,
                    used=q.used_amount,
                    available=q.available_amount,
                    bonus=q.bonus_amount,
                    spillover=q.spillover_amount,
                ),
                daily=DailyQuota(
                    limit=q.limit_amount_daily,
                    used=verdict.daily_used,
                    remaining=verdict.daily_remaining,
                    daily_refreshed=q.daily_refreshed,
                    next_reset=verdict.next_daily_reset,
                ),
                fair_use_limit_reached=q.fair_use_limit_reached,
            )
        )
    limits = [
        RateLimit(
            scope=view.scope,
            limit=view.limit,
            remaining=view.remaining,
            resets_at=_utc(view.resets_at),
            blocked_until=_utc(view.blocked_until),
            queued=view.queued,
            estimated_wait_s=round(view.estimated_wait_s, 3),
        )
        for view in await runtime(ctx).rate_limits()
    ]
    mine = [Budget.model_validate(row) for row in await spending.report(ctx, workspace_id)]
    return QuotaReport(
        workspace_id=workspace_id,
        can_generate=can_generate,
        reason=reason,
        quotas=report,
        rate_limits=limits,
        budgets=mine,
    )


def _utc(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


TOOL = ToolSpec(
    check_quota,
    title="Check neuroflash word quotas",
    toolset="neuroflash",
    annotations=READ_ONLY,
    cost=Cost.NOTHING,
    purpose="the words left today and this month, when they reset, and how long a call would wait.",
)
