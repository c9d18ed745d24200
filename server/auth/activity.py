"""What each principal did today, as `flashsnap-mcp status` shows it: tool calls by outcome and the last one's time.

One document per principal label (the team file's names, else "other": bounded), under `principal:<label>` in the
shared store, so every process and replica adds to the same counts. A day is a UTC day, as neuroflash's daily
quota is: the first call of a new day starts the counts afresh. This module owns the format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.state.layout import PRINCIPALS, principal_key
from server.state.store import Change, Doc, Store, StoreUnavailable

KEPT_S = 30 * 86_400.0  # a principal unseen for 30 days drops out of the view
MAX_OUTCOMES = 50  # error codes are a fixed set; a bound all the same


def day(unix_s: float) -> str:
    """The UTC day `unix_s` falls in: `2026-12-06`."""
    return datetime.fromtimestamp(unix_s, UTC).date().isoformat()


async def record(store: Store, label: str, outcome: str, now: float) -> None:
    """Count one tool call of `label` ended with `outcome` ("ok" or the error code); never fails the call."""
    today = day(now)

    def add(doc: Doc | None) -> Change[None]:
        calls = dict((doc or {}).get("calls") or {}) if (doc or {}).get("day") == today else {}
        if outcome in calls or len(calls) < MAX_OUTCOMES:
            calls[outcome] = int(calls.get(outcome, 0)) + 1
        return Change(None, {"day": today, "calls": calls, "last_call": now}, ttl_s=KEPT_S)

    try:
        await store.update(principal_key(label), add)
    except StoreUnavailable:
        return  # the counts are for people reading status; a call never fails for them


def read(doc: Doc | None, now: float) -> dict[str, Any] | None:
    """A principal's document as status shows it at `now`: today's calls (none yet today: empty), the last call's
    time (None when absent or unreadable)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("calls"), dict):
        return None
    counted = doc["calls"] if doc.get("day") == day(now) else {}
    calls = {str(k): v for k, v in counted.items() if isinstance(v, int) and v >= 0}
    last = doc.get("last_call")
    return {"calls": calls, "last_call": last if isinstance(last, int | float) else None}


async def listed(store: Store, now: float) -> dict[str, dict[str, Any] | None]:
    """Every principal's document as status shows it at `now`, by label."""
    return {key.removeprefix(PRINCIPALS): read(await store.get(key), now) for key in await store.keys(PRINCIPALS)}
