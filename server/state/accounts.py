"""The index of accounts in a state store: which service each account key belongs to, for the status view."""

from __future__ import annotations

from dataclasses import dataclass

from server.state import layout
from server.state.store import Change, Doc, Store

KEY = layout.ACCOUNTS_KEY
KEEP_S = 30 * 86_400.0  # an account no server has opened for a month drops out of the index
MAX_ACCOUNTS = 100  # and the index never holds more than this many, the least recently seen dropped first


@dataclass(frozen=True)
class Account:
    key: str  # the store prefix of its documents: "live:<hash>" or "sandbox:<hash>"
    service: str  # "neuroflash" or "neuralsnap"
    api: str  # the API's host, to tell accounts apart (no credential)
    seen_at: float  # when a server last opened it
    name: str | None = None  # the team file's name for it ([accounts.<name>]); None: the environment's account


async def register(store: Store, account: Account) -> None:
    """Note that a server uses `account` (each start refreshes the entry)."""

    def add(doc: Doc | None) -> Change[None]:
        entries = {k: v for k, v in (doc or {}).items() if _seen_at(v) > account.seen_at - KEEP_S}
        entries[account.key] = {"service": account.service, "api": account.api, "seen_at": account.seen_at}
        if account.name is not None:
            entries[account.key]["name"] = account.name
        newest = sorted(entries, key=lambda k: _seen_at(entries[k]), reverse=True)[:MAX_ACCOUNTS]
        return Change(None, {k: entries[k] for k in newest}, KEEP_S)

    await store.update(KEY, add)


def _seen_at(entry: object) -> float:
    try:
        return float(entry["seen_at"]) if isinstance(entry, dict) else float("-inf")
    except (KeyError, TypeError, ValueError):
        return float("-inf")


async def listed(store: Store) -> list[Account]:
    """Every account in the index, by service then key."""
    found = []
    for key, entry in ((await store.get(KEY)) or {}).items():
        if isinstance(entry, dict):
            try:
                name = entry.get("name")
                found.append(Account(key, str(entry["service"]), str(entry["api"]), float(entry["seen_at"]),
                                     name=name if isinstance(name, str) else None))  # fmt: skip
            except (KeyError, TypeError, ValueError):
                continue  # written by something else: skip it rather than misread it
    return sorted(found, key=lambda a: (a.service, a.key))
