"""A spending call against its caller's own budgets: the free check before any question, the hold before anything
is sent, and the settlement with what the upstream reported.

The stock comes from the tool's one cost declaration (`Cost.WORDS`: words, and a generation in flight;
`Cost.CRYSTALLIZE`: crystallize tokens; `Cost.SEARCHES`: one search). Budgets are the team file's, so they apply
to a named caller (tokens, oauth modes); over stdio and behind the one shared token nobody is counted.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from server import context
from server.auth import budgets, callers, shares
from server.auth.budgets import Ask, Refusal
from server.auth.callers import Caller
from server.errors import BudgetExhausted, FlashsnapError, MissingCredential
from server.neuroflash.quota import TEXT_USAGE, judge
from server.state.layout import AccountKeys
from server.tooling.spec import Cost, ToolContext, runtime

STOCK_OF = {Cost.WORDS: "words", Cost.CRYSTALLIZE: "crystallize", Cost.SEARCHES: "searches"}
UNITS = {"words": "words", "crystallize": "crystallize tokens", "searches": "searches",
         budgets.IN_FLIGHT: "generations at once"}  # fmt: skip


@dataclass
class Spend:
    """A call's hold on its caller's budget; `settle(n)` counts what the upstream reported spent."""

    reported: int | None = field(default=None)

    def settle(self, spent: int) -> None:
        self.reported = max(0, spent)


def _account(ctx: ToolContext, stock: str) -> AccountKeys:
    shared = runtime(ctx)
    return shared.neuroflash().account if stock == "words" else shared.neuralsnap().account


async def _shares(ctx: ToolContext, caller: Caller, account: AccountKeys, workspace_id: str | None) -> dict[str, int]:
    """The caller's share of the workspace's scarce words, per period whose shares are fixed (see shares.py)."""
    shared = runtime(ctx)
    below = shared.settings.share_below
    if workspace_id is None or below <= 0:
        return {}
    now = shared.clock.now()
    quotas = await shared.neuroflash().quotas.quotas(workspace_id)  # the book the free checks just read
    text = next((q for q in quotas if q.usage_type_key == TEXT_USAGE), None)
    if text is None:
        return {}
    left = {
        "day": shares.Left(judge(text, now).daily_remaining, text.limit_amount_daily),
        "month": shares.Left(text.available_amount, text.limit_amount),
    }
    return await shares.caps(shared.store, account, workspace_id, caller.label, left, below, now)


def _refused(caller: Caller, ask: Ask, refusal: Refusal, now: float, workspace_id: str | None) -> BudgetExhausted:
    unit = UNITS[refusal.stock]
    resets = budgets.resets_at(refusal.period, now) if refusal.period else None
    if refusal.period is None:
        message = f"{caller.label} already runs {refusal.spent} {unit}, its limit ({refusal.cap})."
        hint = "Nothing was sent. Call again when one of them has finished."
        return BudgetExhausted(message, stock=refusal.stock, period=None, resets_at=None, hint=hint)
    used = f"{refusal.spent:,} spent and {refusal.held:,} held by calls under way"
    if refusal.reason == "share":
        message = (
            f"Words are scarce in workspace {workspace_id}: what was left this {refusal.period} is shared among the "
            f"principals who spent in it, and {caller.label}'s share allows {refusal.cap:,} in all ({used}); this "
            f"call could spend {ask.amount:,}."
        )
    else:
        message = (
            f"{caller.label}'s budget of {refusal.cap:,} {unit} per {refusal.period} would be passed ({used}); this "
            f"call could spend {ask.amount:,}."
        )
    return BudgetExhausted(message, stock=refusal.stock, period=refusal.period, resets_at=resets, reason=refusal.reason)


async def check(ctx: ToolContext, cost: Cost, estimate: int, *, workspace_id: str | None = None) -> None:
    """Refuse, before any question and before anything is sent, a call its caller's budgets cannot pay for.

    Raises:
        BudgetExhausted: a cap, the caller's share of scarce words, or its generations in flight would be passed.
    """
    await _admit(ctx, cost, estimate, workspace_id, hold=None)


async def _admit(
    ctx: ToolContext, cost: Cost, estimate: int, workspace_id: str | None, hold: tuple[str, float] | None
) -> tuple[Caller, AccountKeys, Ask] | None:
    caller, stock = callers.current(), STOCK_OF.get(cost)
    if caller is None or stock is None:
        return None
    shared = runtime(ctx)
    account = _account(ctx, stock)
    ask = Ask(stock, max(0, estimate), generation=cost is Cost.WORDS)
    parts = await _shares(ctx, caller, account, workspace_id) if stock == "words" else {}
    now = shared.clock.now()
    refusal = await budgets.admit(shared.store, account.budget(caller.label), caller.caps, ask, now, shares=parts,
                                  hold=hold, weight=caller.weight)  # fmt: skip
    if refusal is not None:
        raise _refused(caller, ask, refusal, now, workspace_id)
    return caller, account, ask


@asynccontextmanager
async def held(ctx: ToolContext, cost: Cost, estimate: int, *, workspace_id: str | None = None) -> AsyncIterator[Spend]:
    """Hold `estimate` of the caller's budget while the block sends the call; settle when it ends.

    The block calls `settle(n)` with what the upstream reported; a block that ends without it counts the estimate
    when the request may have been processed (`maybe_processed`, a cut or a crash) and nothing when it surely was
    not. A hold outlives a process that died only until the longest a call may run.

    Raises:
        BudgetExhausted: as `check`, judged again in the same atomic step that holds the estimate.
        FlashsnapError: what the block raised, once the hold is settled.
    """
    shared = runtime(ctx)
    settings = shared.settings
    longest = context.wait_budget(shared.clock).left() + settings.max_generation_s + settings.timeout_s
    hold_id = secrets.token_hex(8)
    admitted = await _admit(ctx, cost, estimate, workspace_id, hold=(hold_id, shared.clock.now() + longest))
    spend = Spend()
    if admitted is None:
        yield spend
        return
    caller, account, ask = admitted
    charged = ask.amount
    try:
        yield spend
        charged = spend.reported if spend.reported is not None else ask.amount
    except FlashsnapError as exc:
        # An upstream's refusal spent nothing; a failure that may have been processed counts the estimate (as does
        # a crash or a cut, which leave `charged` as it was).
        charged = ask.amount if getattr(exc, "maybe_processed", False) else 0
        raise
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled call still lets go of its hold
            await budgets.settle(shared.store, account.budget(caller.label), hold_id, ask.stock, charged,
                                 shared.clock.now())  # fmt: skip
            shared.metrics.budget_spent(caller.label, ask.stock, charged)


async def report(ctx: ToolContext, workspace_id: str) -> list[dict[str, object]]:
    """The caller's own budgets as `check_quota` shows them: per stock and period, spent, held by calls under way,
    its cap, its share of the workspace's scarce words once fixed, and when the period resets. Empty without a
    named caller (stdio, the shared token)."""
    caller = callers.current()
    if caller is None:
        return []
    shared = runtime(ctx)
    now = shared.clock.now()
    rows: list[dict[str, object]] = []
    for stocks, stock in (((budgets.IN_FLIGHT, "words"), "words"), (("crystallize", "searches"), "searches")):
        try:
            account = _account(ctx, stock)
        except MissingCredential:
            continue  # an upstream this account lacks: no budget of it to show
        doc = await shared.store.get(account.budget(caller.label))
        fixed = await shares.listed(shared.store, account, workspace_id, now) if stock == "words" else {}
        for row in budgets.report(doc, caller.caps, now):
            if row["stock"] in stocks:
                period = row["period"]
                share = fixed[period].get(caller.label, 0) if isinstance(period, str) and period in fixed else None
                rows.append({**row, "share": share})
    return rows
