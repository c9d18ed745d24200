"""The scarcity guard (FLASHSNAP_SHARE_BELOW): once a workspace's daily or monthly words first fall below that
fraction of the limit, what is left is divided among the principals who spent in that period, by weight, and the
shares are fixed until the period ends, so one principal cannot take the last words from the others.

One document per account and workspace (`<account>:shares:<workspace>`), fixed by the first call that finds the
words scarce (one atomic step: every process and replica then reads the same shares). This module owns the format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from server.auth import budgets
from server.state.layout import AccountKeys
from server.state.store import KEEP, Change, Doc, Mutation, Store

MAX_SHARES = 10_000  # principals named in one period's shares, whatever a writer put there


@dataclass(frozen=True)
class Left:
    """A workspace's words as its quota says now, for one period: what remains of what limit."""

    remaining: int
    limit: int

    def scarce(self, below: float) -> bool:
        return below > 0 and self.limit > 0 and self.remaining < below * self.limit


def divide(remaining: int, active: Mapping[str, tuple[int, float]]) -> dict[str, int]:
    """Each active principal's cap for the rest of the period: what it spent so far plus its weighted part of
    `remaining` (`active`: label -> (spent in the period, weight)), rounded down so the parts never add up to more."""
    total = sum(weight for _, weight in active.values())
    if not total:
        return {}
    return {label: spent + math.floor(remaining * weight / total) for label, (spent, weight) in active.items()}


async def active(store: Store, account: AccountKeys, period: str, now: float) -> dict[str, tuple[int, float]]:
    """The principals that spent words on this account in the period now running: label -> (spent, weight).

    Raises:
        StoreUnavailable: the store failed.
    """
    found: dict[str, tuple[int, float]] = {}
    for key in await store.keys(account.budgets):
        doc = budgets.fresh(await store.get(key), now)
        spent = doc["spent"][f"words:{period}"]
        if spent > 0:
            found[key.removeprefix(account.budgets)] = (spent, doc["weight"])
    return found


def _fixed(doc: Doc | None, period: str, now: float) -> dict[str, int] | None:
    entry = (doc or {}).get(period)
    if not isinstance(entry, dict) or entry.get("id") != budgets.period_of(period, now):
        return None
    caps = entry.get("caps")
    if not isinstance(caps, dict):
        return None
    return {str(k): v for k, v in list(caps.items())[:MAX_SHARES] if isinstance(v, int) and v >= 0}


async def caps(
    store: Store, account: AccountKeys, workspace_id: str, label: str, left: Mapping[str, Left], below: float,
    now: float,
) -> dict[str, int]:  # fmt: skip
    """Per period whose shares are fixed (or fixed now, the words being scarce): the most `label` may have spent
    in it. A principal that had not spent when the shares were fixed has no share (0).

    Raises:
        StoreUnavailable: the store failed.
    """
    key = account.shares(workspace_id)
    doc = await store.get(key)
    found: dict[str, int] = {}
    for period, words in left.items():
        fixed = _fixed(doc, period, now)
        if fixed is None and words.scarce(below):
            proposed = divide(words.remaining, await active(store, account, period, now))
            fixed = await store.update(key, _fix(period, proposed, now))
        if fixed is not None:
            found[period] = fixed.get(label, 0)
    return found


def _fix(period: str, proposed: dict[str, int], now: float) -> Mutation[dict[str, int]]:
    def step(doc: Doc | None) -> Change[dict[str, int]]:
        already = _fixed(doc, period, now)
        if already is not None:  # another call fixed them first: those hold
            return Change(already, KEEP)
        new = dict(doc or {})
        new[period] = {"id": budgets.period_of(period, now), "caps": proposed}
        return Change(proposed, new, budgets.kept_s(now))

    return step


async def listed(store: Store, account: AccountKeys, workspace_id: str, now: float) -> dict[str, dict[str, int]]:
    """The shares fixed now, per period, for status (empty when none are).

    Raises:
        StoreUnavailable: the store failed.
    """
    doc = await store.get(account.shares(workspace_id))
    return {period: fixed for period in ("day", "month") if (fixed := _fixed(doc, period, now)) is not None}
