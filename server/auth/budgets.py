"""Each principal's budgets on the shared stocks (the team file's caps): what it spent and holds, per period.

One document per account and principal (`<account>:budget:<label>`) in the shared store, so every process and
replica counts one total per principal and period. A spending call is admitted only if spent + held + its
estimate stays within each cap (and within its share of scarce words, `server/auth/shares.py`); it holds its
estimate, in the same atomic step, before anything is sent, and settles with what the upstream reported. A hold
of a process that died runs out by itself. A day ends at midnight UTC, a month at the calendar month's end UTC.
This module owns the format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from server.auth.team import MAX_WEIGHT, Caps
from server.state.store import KEEP, Change, Doc, Store

# (stock, period, the cap's key): the caps a spent amount counts against.
LIMITS = (
    ("words", "day", "words_per_day"),
    ("words", "month", "words_per_month"),
    ("crystallize", "month", "crystallize_tokens_per_month"),
    ("searches", "month", "searches_per_month"),
)
STOCKS = ("words", "crystallize", "searches")
IN_FLIGHT = "generations_in_flight"
MAX_HOLDS = 1_000  # a bound on what one document holds, whatever a writer put there


def day_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def period_of(period: str, now: float) -> str:
    """The id of the day or month `now` falls in: `2026-12-06`, `2026-12`."""
    return day_of(now) if period == "day" else month_of(now)


def resets_at(period: str, now: float) -> datetime:
    """When the day (midnight UTC) or the calendar month (its last midnight UTC) that `now` falls in ends."""
    at = datetime.fromtimestamp(now, UTC)
    midnight = datetime(at.year, at.month, at.day, tzinfo=UTC)
    if period == "day":
        return midnight + timedelta(days=1)
    return datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Ask:
    """What one call asks of a principal's budgets: its estimate of one stock, and whether it is a generation
    (which holds one of `generations_in_flight` while it runs)."""

    stock: str  # "words", "crystallize" or "searches"
    amount: int
    generation: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why a call is refused: the stock and period whose cap (or share, `reason="share"`) it would pass."""

    stock: str
    period: str | None  # "day", "month"; None for generations in flight
    cap: int
    spent: int
    held: int
    reason: str | None = None


def fresh(doc: Doc | None, now: float) -> Doc:
    """The document as it stands at `now`: the counts of a period that ended dropped, holds run out removed."""
    doc = doc if isinstance(doc, dict) else {}
    periods = {"day": day_of(now), "month": month_of(now)}
    spent: dict[str, int] = {}
    old = _mapping(doc.get("spent"))
    stamps = _mapping(doc.get("periods"))
    for stock, period, _ in LIMITS:
        key = f"{stock}:{period}"
        value = old.get(key) if stamps.get(period) == periods[period] else 0
        spent[key] = value if isinstance(value, int) and value >= 0 else 0
    holds: dict[str, dict[str, Any]] = {}
    raw = _mapping(doc.get("held"))
    for hold_id, hold in list(raw.items())[:MAX_HOLDS]:
        if _live(hold, now):
            holds[str(hold_id)] = hold
    weight = doc.get("weight")
    readable = isinstance(weight, int | float) and not isinstance(weight, bool) and 0 < weight <= MAX_WEIGHT
    return {"periods": periods, "spent": spent, "held": holds, "weight": weight if readable else 1}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _live(hold: Any, now: float) -> bool:
    return (
        isinstance(hold, dict)
        and hold.get("stock") in STOCKS
        and isinstance(hold.get("amount"), int)
        and hold["amount"] >= 0
        and isinstance(hold.get("until"), int | float)
        and now < hold["until"]
    )


def held(doc: Doc, stock: str) -> int:
    """What the live holds of `stock` add up to (a fresh document)."""
    return sum(int(h["amount"]) for h in doc["held"].values() if h["stock"] == stock)


def judge(doc: Doc, caps: Caps, ask: Ask, shares: Mapping[str, int]) -> Refusal | None:
    """Whether a fresh document's principal may take `ask` now: every cap of its stock, its share of scarce words
    per period (`shares`: the most it may have spent in that period), and its generations in flight."""
    taken = held(doc, ask.stock)
    for stock, period, key in LIMITS:
        cap = getattr(caps, key)
        spent = doc["spent"][f"{stock}:{period}"]
        if stock == ask.stock and cap is not None and spent + taken + ask.amount > cap:
            return Refusal(stock, period, cap, spent, taken)
    for period, share in shares.items() if ask.stock == "words" else ():
        spent = doc["spent"][f"words:{period}"]
        if spent + taken + ask.amount > share:
            return Refusal("words", period, share, spent, taken, reason="share")
    flights = sum(1 for h in doc["held"].values() if h.get("generation") is True)
    if ask.generation and caps.generations_in_flight is not None and flights + 1 > caps.generations_in_flight:
        return Refusal(IN_FLIGHT, None, caps.generations_in_flight, flights, 0)
    return None


def kept_s(now: float) -> float:
    """How long a document lives: to the end of the month it counts, and a day more."""
    return resets_at("month", now).timestamp() - now + 86_400.0


async def admit(
    store: Store, key: str, caps: Caps, ask: Ask, now: float, *, shares: Mapping[str, int] | None = None,
    hold: tuple[str, float] | None = None, weight: float = 1.0,
) -> Refusal | None:  # fmt: skip
    """Judge `ask` for the principal at `key`; with `hold` (its id, until when), also hold it, in one atomic step.

    Raises:
        StoreUnavailable: the store failed (the fallback store never does).
    """

    if hold is None:  # only a look: a read, no write transaction
        return judge(fresh(await store.get(key), now), caps, ask, shares or {})
    hold_id, until = hold

    def step(doc: Doc | None) -> Change[Refusal | None]:
        now_doc = fresh(doc, now)
        refused = judge(now_doc, caps, ask, shares or {})
        if refused is not None:
            return Change(refused, KEEP)
        now_doc["held"][hold_id] = {"stock": ask.stock, "amount": ask.amount, "generation": ask.generation,
                                    "until": until}  # fmt: skip
        now_doc["weight"] = weight
        return Change(None, now_doc, kept_s(now))

    return await store.update(key, step)


async def settle(store: Store, key: str, hold_id: str, stock: str, spent: int, now: float) -> None:
    """Let go of a hold and count what the upstream reported spent (0: nothing was spent) in each period.

    Raises:
        StoreUnavailable: the store failed (the fallback store never does).
    """

    def step(doc: Doc | None) -> Change[None]:
        now_doc = fresh(doc, now)
        now_doc["held"].pop(hold_id, None)
        for each, period, _ in LIMITS:
            if each == stock:
                now_doc["spent"][f"{stock}:{period}"] += max(0, spent)
        return Change(None, now_doc, kept_s(now))

    await store.update(key, step)


def report(doc: Doc | None, caps: Caps, now: float) -> list[dict[str, Any]]:
    """A principal's budgets as `check_quota` and `status` show them: each stock and period, spent, held, cap."""
    now_doc = fresh(doc, now)
    rows = [
        {"stock": stock, "period": period, "spent": now_doc["spent"][f"{stock}:{period}"],
         "held": held(now_doc, stock), "limit": getattr(caps, key),
         "resets_at": resets_at(period, now).isoformat()}
        for stock, period, key in LIMITS
    ]  # fmt: skip
    flights = sum(1 for h in now_doc["held"].values() if h.get("generation") is True)
    rows.append({"stock": IN_FLIGHT, "period": None, "spent": flights, "held": 0,
                 "limit": caps.generations_in_flight, "resets_at": None})  # fmt: skip
    return rows
