"""NeuralSnap's plan and limits: read by `flashsnap-mcp check`, kept once per state store, seeding the gate.

`GET /profile` costs a request of the key's budget, so servers never send it on their own: `check`
reads it (reusing a copy younger than a day), keeps it in the shared store, and every server that
opens the store afterwards starts its gate from the plan's request rate instead of probing one
request at a time. A Starter plan answers 403 there as everywhere: nothing is kept then.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from server.neuralsnap.wire import Profile
from server.state.store import Change, Doc, Store

KEEP_S = 86_400.0  # a plan changes rarely; a day-old copy is read again


def read_profile(doc: Doc | None, now: float) -> tuple[float, Profile] | None:
    """(seen at, profile) of a stored profile younger than `KEEP_S`; None when absent, old or not ours."""
    if doc is None:
        return None
    try:
        seen_at = float(doc["seen_at"])
        profile = Profile.model_validate(doc["profile"])
    except (KeyError, TypeError, ValueError, ValidationError):
        return None
    return (seen_at, profile) if now - seen_at < KEEP_S else None


async def keep(store: Store, key: str, profile: Profile, now: float) -> None:
    """Keep `profile`, read at `now`, for every process sharing `store` (for `KEEP_S` at most)."""
    doc: dict[str, Any] = {"seen_at": now, "profile": profile.model_dump(mode="json")}
    await store.update(key, lambda _: Change(None, doc, KEEP_S))


def request_rate(profile: Profile) -> int | None:
    """The plan's requests per window (`limits.api_rate`), when it names a plausible one."""
    rate = profile.limits.get("api_rate")
    return rate if isinstance(rate, int) and 0 < rate <= 1_000_000 else None
