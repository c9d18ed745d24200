"""`flashsnap-mcp status`: what the servers sharing a state store know, per account; never a token or a key.

It opens the same store the servers use (the state directory or Redis, from the same
environment) and reads, for each account the servers registered: when the neuroflash token
expires, each rate-limit gate (limit, remaining, reset, penalty, queue), the last quotas seen
per workspace, and the generation streams in use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from server.clock import Clock, SystemClock
from server.config import Settings
from server.credentials import lease
from server.errors import ConfigurationError
from server.neuroflash.quota import TEXT_USAGE, read_book
from server.observe import logs
from server.runtime import open_state
from server.scheduler.slots import holders
from server.scheduler.window import Window
from server.state import accounts, layout
from server.state.opening import default_state_dir
from server.state.sqlite import FILENAME
from server.state.store import Store

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: --watch redraws in place


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


async def gather(store: Store, clock: Clock) -> dict[str, Any]:
    """The whole view as plain data (what --json prints)."""
    now = clock.now()
    found: list[dict[str, Any]] = []
    for account in await accounts.listed(store):
        entry: dict[str, Any] = {
            "account": account.key,
            "service": account.service,
            "api": account.api,
            "last_started": _when(account.seen_at),
        }
        keys = layout.AccountKeys(account.key)
        if account.service == "neuroflash":
            entry["token"] = _token(await store.get(keys.token), now)
        entry["gate"] = _gate(await store.get(keys.gate), now)
        if account.service == "neuroflash":
            entry["quotas"] = {
                layout.workspace_of(key): _quota(await store.get(key)) for key in await store.keys(f"{keys.quota}:")
            }
            entry["generation_slots"] = {
                layout.workspace_of(key): len(holders(await store.get(key), now))
                for key in await store.keys(f"{keys.slots}:")
            }
        found.append(entry)
    return {"at": _when(now), "store": store.kind, "where": store.describe(), "accounts": found}


def _token(doc: dict[str, Any] | None, now: float) -> dict[str, Any]:
    live = lease.live_parts(doc, now)  # the token itself is never read out
    token, failure = live.get("token"), live.get("failure")
    return {
        "valid_until": _when(token["expires_at"]) if token else None,
        "valid_for_s": round(token["expires_at"] - now) if token else None,
        "refreshing": "lease" in live,
        "last_failure": {"kind": failure["kind"], "message": failure["message"]} if failure else None,
    }


def _gate(doc: dict[str, Any] | None, now: float) -> dict[str, Any]:
    w = Window.load(doc, now)
    return {
        "limit": w.limit,
        "remaining": w.remaining,
        "resets_at": _when(w.reset_at) if w.reset_at is not None and w.reset_at > now else None,
        "penalty_until": _when(w.blocked_until) if w.blocked_until > now else None,
        "queued": len(w.waiting),
        "in_flight": w.in_flight,
    }


def _quota(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    book = read_book(doc)
    if book is None:
        return None
    seen_at, quotas = book
    text = next((q for q in quotas if q.usage_type_key == TEXT_USAGE), None)
    if text is None:
        return {"seen_at": _when(seen_at)}
    return {
        "seen_at": _when(seen_at),
        "daily_used": text.used_amount_daily,
        "daily_limit": text.limit_amount_daily,
        "monthly_available": text.available_amount,
        "monthly_limit": text.limit_amount,
        "fair_use_limit_reached": text.fair_use_limit_reached,
    }


def render(view: dict[str, Any]) -> str:
    """The view for a person: one block per account."""
    lines = [f"flashsnap-mcp status at {view['at']}, state: {view['store']} ({view['where']})"]
    if not view["accounts"]:
        lines.append("no accounts yet: no server has started with this state store")
    for a in view["accounts"]:
        lines += ["", f"{a['service']}  {a['account']}  ({a['api']}, last started {a['last_started']})"]
        if (token := a.get("token")) is not None:
            if token["valid_until"]:
                state = f"valid until {token['valid_until']} ({_duration(token['valid_for_s'])} left)"
            else:
                state = "none held"
            if token["refreshing"]:
                state += ", being refreshed"
            if token["last_failure"]:
                failed = token["last_failure"]
                state += f"; last request failed ({_printable(failed['kind'])}): {_printable(failed['message'])}"
            lines.append(f"  token        {state}")
        g = a["gate"]
        limit = "unknown" if g["limit"] is None else str(g["limit"])
        remaining = "unknown" if g["remaining"] is None else str(g["remaining"])
        lines.append(
            f"  rate limit   limit {limit}, remaining {remaining}, resets {g['resets_at'] or '-'}, "
            f"penalty until {g['penalty_until'] or '-'}, queued {g['queued']}, in flight {g['in_flight']}"
        )
        for workspace, q in (a.get("quotas") or {}).items():
            if q is None or "daily_used" not in q:
                continue
            flag = ", FAIR USE REACHED" if q["fair_use_limit_reached"] else ""
            lines.append(
                f"  quota        {workspace}: daily {q['daily_used']}/{q['daily_limit']} used, monthly "
                f"{q['monthly_available']}/{q['monthly_limit']} left{flag} (seen {q['seen_at']})"
            )
        slots = a.get("generation_slots")
        if slots is not None:
            held = ", ".join(f"{w}: {n}" for w, n in slots.items() if n) or "none"
            lines.append(f"  generations  in use: {held}")
    return "\n".join(lines)


def _printable(text: object) -> str:
    """Text that may quote an upstream, safe for a terminal: no escape sequences, bounded."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))[:300]


def _duration(seconds: float | None) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flashsnap-mcp status",
        description="Show what the servers sharing this state store know: tokens (expiry only), rate limits, "
        "quotas, generation slots. Reads FLASHSNAP_STATE, FLASHSNAP_STATE_DIR and FLASHSNAP_REDIS_URL like the server.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts (one object per refresh)")
    parser.add_argument("--watch", action="store_true", help="refresh in place until interrupted")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    clock = SystemClock()
    if settings.store == "sqlite":
        database = (settings.state_dir or default_state_dir()) / FILENAME
        if not database.exists():  # a mistyped directory: say so, and create nothing there
            print(f"flashsnap-mcp status: no shared state at {database} (no server has run with this "  # noqa: T201
                  "FLASHSNAP_STATE_DIR)", file=sys.stderr)  # fmt: skip
            return 1
    store = await open_state(settings, clock)
    try:
        if not store.shared or store.degraded:
            problem = f": {store.problem}" if store.problem else ""
            print(f"flashsnap-mcp status: no shared state to read ({store.kind}{problem})", file=sys.stderr)  # noqa: T201
            return 1
        while True:
            view = await gather(store, clock)
            out = json.dumps(view) if args.json else render(view)
            if args.watch and not args.json:
                out = CLEAR + out
            print(out, flush=True)  # noqa: T201 - this command's output is for a person or a script
            if not args.watch:
                return 0
            await anyio.sleep(max(0.1, args.interval))
    finally:
        await store.aclose()


def main(argv: Sequence[str]) -> None:
    """Run `flashsnap-mcp status` with `argv`.

    Raises:
        SystemExit: always: 0 when the view was shown, 1 when there is no shared state, 2 on a bad configuration.
    """
    args = parse_args(argv)
    logs.configure(os.environ.get("FLASHSNAP_LOG_LEVEL", "WARNING").upper())
    try:
        settings = Settings.from_env(os.environ)
        code = anyio.run(run, args, settings)
    except ConfigurationError as exc:
        print(f"flashsnap-mcp status: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)
