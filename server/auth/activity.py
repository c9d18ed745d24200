"""What each principal did today, as `flashsnap-mcp status` shows it: tool calls by outcome, the last one's time, and
its turns at the upstream gates (requests let out, seconds waited).

One document per principal label (the team file's names, else "other": bounded), under `principal:<label>` in the
shared store, so every process and replica adds to the same counts. A day is a UTC day, as neuroflash's daily
quota is: the first call of a new day starts the counts afresh. This module owns the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from server.state.layout import PRINCIPALS, principal_key
from server.state.store import Change, Doc, Store, StoreUnavailable

KEPT_S = 30 * 86_400.0  # a principal unseen for 30 days drops out of the view
MAX_OUTCOMES = 50  # error codes are a fixed set; a bound all the same


@dataclass(frozen=True)
class Turns:
    """One call's passages through the gates: upstream requests let out, and seconds it waited for them."""

    sent: int = 0
    waited_s: float = 0.0


def day(unix_s: float) -> str:
    """The UTC day `unix_s` falls in: `2026-12-06`."""
    return datetime.fromtimestamp(unix_s, UTC).date().isoformat()


async def record(store: Store, label: str, outcome: str, now: float, turns: Turns = Turns()) -> None:
    """Count one tool call of `label` ended with `outcome` ("ok" or the error code) and its `turns`; never fails
    the call."""
    today = day(now)

    def add(doc: Doc | None) -> Change[None]:
        same_day = (doc or {}).get("day") == today
        kept = (doc or {}) if same_day else {}
        calls = dict(kept.get("calls") or {})
        if outcome in calls or len(calls) < MAX_OUTCOMES:
            calls[outcome] = int(calls.get(outcome, 0)) + 1
        sent, waited = _figure(kept.get("sent")), _figure(kept.get("waited_s"))
        return Change(None, {"day": today, "calls": calls, "last_call": now, "sent": int(sent) + turns.sent,
                             "waited_s": waited + turns.waited_s}, ttl_s=KEPT_S)  # fmt: skip

    try:
        await store.update(principal_key(label), add)
    except StoreUnavailable:
        return  # the counts are for people reading status; a call never fails for them


def read(doc: Doc | None, now: float) -> dict[str, Any] | None:
    """A principal's document as status shows it at `now`: today's calls, requests let out and seconds waited (none
    yet today: empty, 0), and the last call's time (None when absent or unreadable)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("calls"), dict):
        return None
    today = doc if doc.get("day") == day(now) else {}
    calls = {str(k): v for k, v in (today.get("calls") or {}).items() if isinstance(v, int) and v >= 0}
    last = doc.get("last_call")
    return {"calls": calls, "last_call": last if isinstance(last, int | float) else None,
            "sent": int(_figure(today.get("sent"))), "waited_s": _figure(today.get("waited_s"))}  # fmt: skip


def _figure(value: object) -> float:
    """A count or seconds as stored: a finite number at least 0, else 0 (another writer's or an older version's)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e15:
        return 0.0
    return float(value)


async def listed(store: Store, now: float) -> dict[str, dict[str, Any] | None]:
    """Every principal's document as status shows it at `now`, by label."""
    return {key.removeprefix(PRINCIPALS): read(await store.get(key), now) for key in await store.keys(PRINCIPALS)}
