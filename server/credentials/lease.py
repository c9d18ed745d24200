"""The neuroflash token as a shared document: who fetches it (a lease), the token, a recent failure.

Pure functions over the document, each applied in one atomic store update, so that however
many processes need a token at once, one fetches it and the others take its result:

- `claim`: take a token fresh enough, or the failure of a fetch that just failed, or the
  lease to fetch; or learn that another process holds the lease (and wait for it).
- `store_token` / `store_failure`: the lease holder's result, for everyone.
- `forget`: a 401 invalidates exactly the token that was refused, everywhere.

The document expires when the last thing in it does: a token is kept no longer than it is valid.
Each part is believed only within its normal lifetime, whatever the document says (it is sealed, so a store
writer cannot plant one; a bound all the same): a lease ends within `LEASE_S`, a failure within
`FAILURE_MEMORY_S`, a token within its lifetime of at most `MAX_LIFETIME_S`, each with `CLOCK_SKEW_S` of slack
for replicas whose clocks differ. A part that claims more reads as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from server.state.store import Change, Doc

FAILURE_MEMORY_S = 5.0  # how long a failed token request answers for the calls that queued behind it
LEASE_S = 5.0  # how long a process that died while fetching holds the others up, at most
MAX_LIFETIME_S = 30 * 86_400.0  # a token lifetime beyond a month is not believed
CLOCK_SKEW_S = 1.0  # how far ahead another replica's clock may be and its lease or failure still be read


@dataclass(frozen=True)
class Have:
    token: str
    expires_at: float
    lifetime: float


@dataclass(frozen=True)
class Failed:
    kind: str  # "rejected" or "unavailable"
    message: str
    hint: str | None
    status: int | None


@dataclass(frozen=True)
class Mine:
    """This process holds the lease: it fetches."""


@dataclass(frozen=True)
class Busy:
    """Another process fetches; its lease runs until `until`."""

    until: float


Claim = Have | Failed | Mine | Busy


def live_parts(doc: Doc | None, now: float) -> dict[str, Any]:
    """The parts of the document that are well formed and have not expired (anything else reads as absent)."""
    doc = dict(doc or {})
    live: dict[str, Any] = {}
    token = doc.get("token")
    if (
        _shaped(token, value=str, expires_at=float, lifetime=float)
        and 0 < token["lifetime"] <= MAX_LIFETIME_S
        and _within(token["expires_at"], now, token["lifetime"])
    ):
        live["token"] = token
    lease = doc.get("lease")
    if _shaped(lease, owner=str, until=float) and _within(lease["until"], now, LEASE_S):
        live["lease"] = lease
    failure = doc.get("failure")
    if _shaped(failure, kind=str, message=str, until=float) and _within(failure["until"], now, FAILURE_MEMORY_S):
        live["failure"] = failure
    return live


def _within(until: float, now: float, lifetime: float) -> bool:
    """Whether a part ending at `until` is live now and ends no later than its lifetime allows."""
    return now < until <= now + lifetime + CLOCK_SKEW_S


def _shaped(part: Any, **fields: type) -> TypeGuard[dict[str, Any]]:
    """Whether `part` is an object with each field of its type (ints pass for floats, bools for nothing)."""
    if not isinstance(part, dict):
        return False
    for name, kind in fields.items():
        value = part.get(name)
        if isinstance(value, bool):
            return False
        if not (isinstance(value, kind) or (kind is float and isinstance(value, int))):
            return False
    return True


def _change(result: Any, live: dict[str, Any], now: float) -> Change[Any]:
    if not live:
        return Change(result, None)
    ends = [live["token"]["expires_at"]] if "token" in live else []
    ends += [live[k]["until"] for k in ("lease", "failure") if k in live]
    return Change(result, live, ttl_s=max(1.0, max(ends) - now))


def claim(doc: Doc | None, now: float, *, owner: str, fresh_for: float, lease_s: float) -> Change[Claim]:
    """A token valid for more than `fresh_for` seconds, a recent failure, or the lease to fetch."""
    live = live_parts(doc, now)
    token = live.get("token")
    if token is not None and token["expires_at"] - now > min(fresh_for, float(token["lifetime"]) / 4):
        return Change(Have(token["value"], token["expires_at"], token["lifetime"]))
    failure = live.get("failure")
    if failure is not None:
        hint, status = failure.get("hint"), failure.get("status")
        return Change(
            Failed(
                failure["kind"],
                failure["message"],
                hint if isinstance(hint, str) else None,
                status if isinstance(status, int) and not isinstance(status, bool) else None,
            )
        )
    lease = live.get("lease")
    if lease is not None and lease["owner"] != owner:
        return Change(Busy(float(lease["until"])))
    live["lease"] = {"owner": owner, "until": now + lease_s}
    return _change(Mine(), live, now)


def renew(doc: Doc | None, now: float, *, owner: str, lease_s: float) -> Change[bool]:
    """Keep the lease while the fetch goes on; False if it was lost (expired and taken)."""
    live = live_parts(doc, now)
    lease = live.get("lease")
    if lease is not None and lease["owner"] != owner:
        return Change(False)
    live["lease"] = {"owner": owner, "until": now + lease_s}
    return _change(True, live, now)


def store_token(doc: Doc | None, now: float, *, owner: str, value: str, lifetime: float) -> Change[None]:
    live = live_parts(doc, now)
    if live.get("lease", {}).get("owner") == owner:
        del live["lease"]
    live.pop("failure", None)
    live["token"] = {"value": value, "expires_at": now + lifetime, "lifetime": lifetime}
    return _change(None, live, now)


def store_failure(doc: Doc | None, now: float, *, owner: str, failed: Failed, memory_s: float) -> Change[None]:
    live = live_parts(doc, now)
    if live.get("lease", {}).get("owner") == owner:
        del live["lease"]
    live["failure"] = {
        "kind": failed.kind,
        "message": failed.message,
        "hint": failed.hint,
        "status": failed.status,
        "until": now + memory_s,
    }
    return _change(None, live, now)


def release(doc: Doc | None, now: float, *, owner: str) -> Change[None]:
    """Give the lease back without a result (the fetch was cancelled)."""
    live = live_parts(doc, now)
    if live.get("lease", {}).get("owner") != owner:
        return Change(None)
    del live["lease"]
    return _change(None, live, now)


def forget(doc: Doc | None, now: float, *, used: str) -> Change[None]:
    """Drop the token a call was refused with, unless a newer one already replaced it."""
    live = live_parts(doc, now)
    if live.get("token", {}).get("value") != used:
        return Change(None)
    del live["token"]
    return _change(None, live, now)
