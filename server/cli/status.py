"""`flashsnap-mcp status`: what the servers sharing a state store know, per account; never a token or a key.

It opens the same store the servers use (the state directory or Redis, from the same
environment) and reads, for each account the servers registered: when the neuroflash token
expires, each rate-limit gate (limit, remaining, reset, penalty, queue), the last quotas seen
per workspace, and the generation streams in use.

It never crashes on a document it does not like: a figure no upstream can mean (a reset in the
year 58881, a limit of 0) is shown as stored and marked implausible (the servers ignore it), and
a document that cannot be read at all is shown raw. What is sealed (`server/state/sealing.py`: the token,
quotas, the plan) it reads with the account's credentials from the same environment; an account whose
credentials it lacks is marked sealed, its rate limit and slots (left plain) shown all the same.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio

from server.auth import activity, budgets
from server.auth import team as teams
from server.cli.sandboxing import sandbox_reader
from server.clock import Clock, SystemClock
from server.config import Settings
from server.credentials import lease
from server.errors import ConfigurationError
from server.httpio import MAX_WINDOW_S
from server.neuralsnap import profile
from server.neuroflash.quota import TEXT_USAGE, read_book
from server.observe import logs
from server.runtime import open_state
from server.scheduler import burst
from server.scheduler.slots import holders
from server.scheduler.window import Window
from server.state import accounts, layout
from server.state.opening import default_state_dir
from server.state.sealing import readable
from server.state.sqlite import FILENAME
from server.state.store import Store
from server.upstream import accounts as team_accounts
from server.upstream.accounts import Account

T = TypeVar("T")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: --watch redraws in place


def _when(ts: float | None) -> str | None:
    """A time as ISO 8601; one that is no date at all (the year 58881) shown raw, marked."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError, TypeError):
        return f"{_printable(ts)} (implausible: not a date)"


def _ahead(value: object, now: float) -> str | None:
    """A stored time still ahead (None when absent or past); one no window can end at is shown raw, marked."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{_printable(value)} (implausible: not a time)"
    if value <= now:
        return None
    try:
        when = datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{_printable(value)} (implausible: not a date, ignored)"
    if value > now + MAX_WINDOW_S:
        return f"{when} (implausible: more than a day ahead, ignored)"
    return when


def _figure(value: object, low: int, high: object = None) -> int | str | None:
    """A stored count as a number; one outside low..high (or no number) shown raw, marked implausible."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{_printable(value)} (implausible)"
    top = high if isinstance(high, int) and not isinstance(high, bool) and high >= low else None
    if value < low or (top is not None and value > top) or value != int(value):
        return f"{_printable(value)} (implausible)"
    return int(value)


def _shown(read: Callable[[dict[str, Any] | None, float], T], doc: dict[str, Any] | None,
           now: float) -> T | dict[str, Any]:  # fmt: skip
    """A document through its reader; one the reader chokes on is shown raw instead of ending the view."""
    try:
        return read(doc, now)
    except Exception as exc:  # a view of any document, whoever wrote it
        raw = json.dumps(doc, default=str)[:300]
        return {"unreadable": f"{type(exc).__name__}: {_printable(exc)}", "raw": _printable(raw)}


async def gather(store: Store, clock: Clock, team: teams.Team = teams.NO_TEAM) -> dict[str, Any]:
    """The whole view as plain data (what --json prints); `team`: the team file, for its principals' caps."""
    now = clock.now()
    found: list[dict[str, Any]] = []
    for account in await accounts.listed(store):
        entry: dict[str, Any] = {
            "account": account.key,
            "name": account.name or "default",  # the team file's [accounts.<name>], else the environment's
            "service": account.service,
            "api": account.api,
            "last_started": _when(account.seen_at),
        }
        keys = layout.AccountKeys(account.key)
        if not readable(store, keys.token):
            entry["sealed"] = True  # the account's documents open only with its credentials; the gate is plain
        if account.service == "neuroflash" and not entry.get("sealed"):
            entry["token"] = _shown(_token, await store.get(keys.token), now)
        entry["gate"] = _shown(_gate, await store.get(keys.gate), now)
        if account.service == "neuralsnap" and (kept := profile.read_profile(await store.get(keys.profile), now)):
            entry["plan"] = {"plan": kept[1].plan, "limits": kept[1].limits, "seen_at": _when(kept[0])}
        # Endpoints whose answers showed a budget of their own (scheduler/buckets.py), each with its window.
        entry["endpoints"] = {
            key.removeprefix(f"{keys.gate}:"): _shown(_gate, await store.get(key), now)
            for key in await store.keys(f"{keys.gate}:")
        }
        if account.service == "neuroflash" and not entry.get("sealed"):
            entry["quotas"] = {
                layout.workspace_of(key): _shown(_quota, await store.get(key), now)
                for key in await store.keys(f"{keys.quota}:")
            }
        if not entry.get("sealed"):
            entry["budgets"] = await _budgets(store, keys, account.service, team, now)
        if account.service == "neuroflash":
            entry["generation_slots"] = {
                layout.workspace_of(key): _shown(_slots, await store.get(key), now)
                for key in await store.keys(f"{keys.slots}:")
            }
        found.append(entry)
    waiting = _queued_by(found)
    principals = {
        label: None
        if seen is None
        else {**seen, "last_call": _when(seen["last_call"]), "queued": waiting.get(label, 0)}
        for label, seen in (await activity.listed(store, now)).items()
    }
    return {"at": _when(now), "store": store.kind, "where": store.describe(), "accounts": found,
            "principals": principals}  # fmt: skip


# The stocks each service's budget documents count (server/auth/budgets.py).
BUDGET_STOCKS = {"neuroflash": ("words", budgets.IN_FLIGHT), "neuralsnap": ("crystallize", "searches")}


async def _budgets(
    store: Store, keys: layout.AccountKeys, service: str, team: teams.Team, now: float
) -> dict[str, list[dict[str, Any]]]:
    """What each principal spent (and holds) of this account's stocks, against its caps where the team file is
    known: label -> one row per stock and period."""
    found = {}
    for key in await store.keys(keys.budgets):
        label = key.removeprefix(keys.budgets)
        entry = team.by_name(label)
        caps = entry.caps if entry is not None else team.default_caps
        rows = budgets.report(await store.get(key), caps, now)
        found[label] = [row for row in rows if row["stock"] in BUDGET_STOCKS.get(service, ())]
    return found


def _queued_by(accounts: list[dict[str, Any]]) -> Counter[str]:
    """The calls waiting at every shared gate now, by principal (one per process and gate: the heads)."""
    waiting: Counter[str] = Counter()
    for entry in accounts:
        for gate in [entry.get("gate"), *entry.get("endpoints", {}).values()]:
            if isinstance(gate, dict):
                waiting.update(gate.get("queued_by") or {})
    return waiting


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
    """The gate's figures as stored (so an implausible one is seen, marked), its queue as the servers read it."""
    w = Window.load(doc, now)
    raw = doc or {}
    limit = _figure(raw.get("limit"), 1)
    return {
        "limit": limit,
        "remaining": _figure(raw.get("remaining"), 0, limit),
        "resets_at": _ahead(raw.get("reset_at"), now),
        "penalty_until": _ahead(raw.get("blocked_until") or None, now),
        "queued": len(w.waiting),
        "queued_by": dict(Counter(t.principal for t in w.waiting.values())),  # whom the waiting calls are for
        "in_flight": w.in_flight,
        "burst_per_s": w.burst if w.burst is not None else burst.page_burst(w),  # learnt, else the page's
    }


def _slots(doc: dict[str, Any] | None, now: float) -> int:
    return len(holders(doc, now))


def _quota(doc: dict[str, Any] | None, now: float = 0.0) -> dict[str, Any] | None:
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
        named = f"account {_printable(a['name'])}  " if a.get("name") not in (None, "default") else ""
        lines += ["", f"{a['service']}  {named}{a['account']}  ({a['api']}, last started {a['last_started']})"]
        if a.get("sealed"):
            lines.append("  sealed       token, quotas, plan: run with this account's credentials to read them")
        lines += _token_lines(a.get("token"))
        if (plan := a.get("plan")) is not None:
            limits = ", ".join(f"{k} {v}" for k, v in plan["limits"].items() if v is not None)
            lines.append(f"  plan         {_printable(plan['plan'])}: {_printable(limits)} (read {plan['seen_at']})")
        lines += _gate_lines(a["gate"])
        lines += _endpoint_lines(a.get("endpoints") or {})
        lines += _quota_lines(a.get("quotas") or {})
        lines += _budget_lines(a.get("budgets") or {})
        slots = a.get("generation_slots")
        if slots is not None:
            held = ", ".join(f"{w}: {n if isinstance(n, int) else n['raw']}" for w, n in slots.items() if n) or "none"
            lines.append(f"  generations  in use: {held}")
    return "\n".join(lines + _principal_lines(view.get("principals") or {}))


def _principal_lines(principals: dict[str, dict[str, Any] | None]) -> list[str]:
    """Who called (tokens, oauth modes): each principal's tool calls today by outcome, when it last called, and its
    turns at the gates: calls waiting now, requests let out and seconds waited today."""
    if not principals:
        return []
    lines = ["", "principals (tool calls today, UTC, by outcome) and their turns at the gates"]
    for label, seen in sorted(principals.items()):
        if seen is None:
            lines.append(f"  {_printable(label):<12} unreadable")
            continue
        calls = ", ".join(f"{_printable(k)} {v}" for k, v in sorted(seen["calls"].items())) or "none"
        turns = f"queued {seen.get('queued', 0)}, sent {seen.get('sent', 0)}, waited {seen.get('waited_s', 0.0):.1f} s"
        lines.append(f"  {_printable(label):<12} {calls}; last {seen['last_call']}; {turns}")
    return lines


def _token_lines(token: dict[str, Any] | None) -> list[str]:
    if token is None:
        return []
    if "unreadable" in token:
        return [f"  token        unreadable document ({token['unreadable']}): {token['raw']}"]
    state = (
        f"valid until {token['valid_until']} ({_duration(token['valid_for_s'])} left)"
        if token["valid_until"]
        else "none held"
    )
    if token["refreshing"]:
        state += ", being refreshed"
    if failed := token["last_failure"]:
        state += f"; last request failed ({_printable(failed['kind'])}): {_printable(failed['message'])}"
    return [f"  token        {state}"]


def _gate_lines(g: dict[str, Any]) -> list[str]:
    lines = []
    if "unreadable" in g:
        lines.append(f"  rate limit   unreadable document ({g['unreadable']}): {g['raw']}")
        g = {"limit": None, "remaining": None, "resets_at": None, "penalty_until": None, "queued": 0, "in_flight": 0}
    lines.append(
        f"  rate limit   limit {_known(g['limit'])}, remaining {_known(g['remaining'])}, "
        f"resets {g['resets_at'] or '-'}, penalty until {g['penalty_until'] or '-'}, "
        f"queued {g['queued']}, in flight {g['in_flight']}"
    )
    return lines


def _endpoint_lines(endpoints: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, e in endpoints.items():
        if "unreadable" in e:
            lines.append(f"  endpoint     {name}: unreadable document ({e['unreadable']}): {e['raw']}")
            continue
        burst = "" if e["burst_per_s"] is None else f", burst {e['burst_per_s']}/s"
        lines.append(
            f"  endpoint     {name}: limit {_known(e['limit'])}, remaining {_known(e['remaining'])}, "
            f"resets {e['resets_at'] or '-'}{burst}, queued {e['queued']}, in flight {e['in_flight']}"
        )
    return lines


def _quota_lines(quotas: dict[str, dict[str, Any] | None]) -> list[str]:
    lines = []
    for workspace, q in quotas.items():
        if q is not None and "unreadable" in q:
            lines.append(f"  quota        {workspace}: unreadable document ({q['unreadable']}): {q['raw']}")
        if q is None or "daily_used" not in q:
            continue
        flag = ", FAIR USE REACHED" if q["fair_use_limit_reached"] else ""
        lines.append(
            f"  quota        {workspace}: daily {q['daily_used']}/{q['daily_limit']} used, monthly "
            f"{q['monthly_available']}/{q['monthly_limit']} left{flag} (seen {q['seen_at']})"
        )
    return lines


def _budget_lines(found: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per principal: what it spent this day and month (of its cap, when it has one) and holds in calls under way."""
    lines = []
    for label, rows in sorted(found.items()):
        parts = []
        for row in rows:
            cap = f"/{row['limit']}" if row["limit"] is not None else ""
            when = {"day": " today", "month": " this month", None: " at once"}[row["period"]]
            held = f" (+{row['held']} held)" if row["held"] else ""
            parts.append(f"{row['stock']} {row['spent']}{cap}{when}{held}")
        lines.append(f"  budget       {_printable(label)}: {', '.join(parts)}")
    return lines


def _known(figure: object) -> str:
    return "unknown" if figure is None else str(figure)


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


def _team_accounts(settings: Settings) -> Sequence[Account]:
    """The team file's accounts whose credentials this environment holds too, so their documents open; an
    account it cannot read is shown sealed, as any account of other credentials is (an operator command reads)."""
    try:
        return team_accounts.from_team_file(settings.team_file)
    except ConfigurationError as exc:
        print(f"status: the team file's accounts are shown sealed: {exc}", file=sys.stderr)  # noqa: T201
        return ()


def _team(settings: Settings) -> teams.Team:
    """The team file, for its principals' caps; without one (or unreadable), caps are not shown."""
    try:
        return teams.load(settings.team_file) if settings.team_file is not None else teams.NO_TEAM
    except ConfigurationError:
        return teams.NO_TEAM  # _team_accounts already said what is wrong with it


async def open_shared(settings: Settings, clock: Clock, command: str) -> Store | None:
    """The state store the servers share, or None after saying on stderr why there is none (a directory no
    server has used, the memory store, a store that failed): an operator command never creates one.

    Raises:
        ConfigurationError: a Redis store was asked for and does not answer.
    """
    if settings.store == "sqlite":
        database = (settings.state_dir or default_state_dir()) / FILENAME
        if not database.exists():  # a mistyped directory: say so, and create nothing there
            print(f"{command}: no shared state at {database} (no server has run with this "  # noqa: T201
                  "FLASHSNAP_STATE_DIR)", file=sys.stderr)  # fmt: skip
            return None
    store = await open_state(settings, clock, readers=(sandbox_reader(settings),), accounts=_team_accounts(settings))
    if not store.shared or store.degraded:
        problem = f": {store.problem}" if store.problem else ""
        print(f"{command}: no shared state to read ({store.kind}{problem})", file=sys.stderr)  # noqa: T201
        await store.aclose()
        return None
    return store


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the view once, or redraw it until interrupted; 1 when there is no shared state to read.

    Raises:
        ConfigurationError: a Redis store was asked for and does not answer.
    """
    clock = SystemClock()
    mask = logs.SecretMask(settings.secrets)  # a stored text may quote one (a store written by an older version)
    store = await open_shared(settings, clock, "flashsnap-mcp status")
    if store is None:
        return 1
    try:
        while True:
            view = await gather(store, clock, _team(settings))
            out = mask.mask(json.dumps(view) if args.json else render(view))
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
