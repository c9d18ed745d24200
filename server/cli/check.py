"""`flashsnap-mcp check`: try each configured service with its cheapest request and say what works and what to fix."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import anyio

from server import __version__
from server.app import tool_selection  # the app factory is the one that knows the tools
from server.cli.access import access
from server.cli.findings import Finding, Report, duration, failed, render, when
from server.cli.sandboxing import sandbox_environment
from server.clock import Clock, SystemClock
from server.config import Settings
from server.errors import ConfigurationError, FlashsnapError, RouteMissing
from server.neuralsnap import profile
from server.neuroflash.quota import TEXT_USAGE, judge
from server.neuroflash.service import NeuroflashService
from server.observe import logs
from server.runtime import Runtime, open_runtime, open_state
from server.state.store import Store
from server.tooling import consent
from server.upstream import accounts

MAX_QUOTA_LOOKUPS = 5  # one request each: enough for the accounts people have, bounded for those they don't


async def _check_state(settings: Settings, clock: Clock, report: Report) -> None:
    try:
        store = await open_state(settings, clock)
    except ConfigurationError as exc:
        report.add(
            "state",
            settings.store,
            "fail",
            exc.message,
            "Start the Redis/Valkey server, fix FLASHSNAP_REDIS_URL, or use FLASHSNAP_STATE=sqlite for a single host.",
        )
        return
    try:
        report.add("state", store.kind, "ok", f"shared state store reachable: {store.describe()}")
    finally:
        await store.aclose()


async def _check_neuroflash(runtime: Runtime, settings: Settings, report: Report) -> None:
    service = "neuroflash"
    if not settings.neuroflash_configured:
        report.add(
            service,
            "credentials",
            "skip",
            "not configured: the neuroflash tools are off",
            "Set NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET to use them.",
        )
        return
    neuroflash = runtime.neuroflash()
    try:
        await neuroflash.tokens.token()
    except FlashsnapError as exc:
        failed(report, service, "token", exc)
        return
    left, lifetime = neuroflash.tokens.validity() or (0.0, 0.0)
    report.add(
        service,
        "token",
        "ok",
        f"token obtained for client {settings.neuroflash_client_id}, valid for {duration(left)}",
        facts={"expires_in_s": round(left), "lifetime_s": round(lifetime)},
    )
    try:
        workspaces, default = await neuroflash.list_workspaces()
    except FlashsnapError as exc:
        failed(report, service, "workspaces", exc)
        return
    names = ", ".join(f"{w.name} ({w.id}){' [default]' if w.id == default else ''}" for w in workspaces)
    facts: dict[str, Any] = {"workspaces": [w.model_dump() for w in workspaces], "default": default}
    ids = [w.id for w in workspaces]
    if not workspaces:
        report.add(
            service,
            "workspaces",
            "fail",
            "the service account sees no workspace",
            "Give the service account access to a workspace in neuroflash.",
            facts,
        )
        return
    if settings.neuroflash_workspace_id and settings.neuroflash_workspace_id not in ids:
        report.add(
            service,
            "workspaces",
            "fail",
            f"NEUROFLASH_WORKSPACE_ID={settings.neuroflash_workspace_id} is not "
            f"one of the account's workspaces: {names}",
            "Set NEUROFLASH_WORKSPACE_ID to one of " + ", ".join(ids) + ", or leave it unset.",
            facts,
        )
    elif default is None:
        report.add(
            service,
            "workspaces",
            "warn",
            f"{len(workspaces)} workspaces, no default: {names}",
            "Tools then need workspace_id; set NEUROFLASH_WORKSPACE_ID to one of "
            + ", ".join(ids)
            + " to have a default.",
            facts,
        )
    else:
        report.add(service, "workspaces", "ok", f"{len(workspaces)}: {names}", facts=facts)
    now = runtime.clock.now()
    for workspace in workspaces[:MAX_QUOTA_LOOKUPS]:
        try:
            quotas = await neuroflash.client.quotas(workspace.id)
        except FlashsnapError as exc:
            failed(report, service, f"quota {workspace.name}", exc)
            continue
        text = next((q for q in quotas if q.usage_type_key == TEXT_USAGE), None)
        if text is None:
            report.add(service, f"quota {workspace.name}", "warn", "no text quota: generate cannot run here")
            continue
        verdict = judge(text, now)
        detail = (
            f"{verdict.daily_remaining:,} of {text.limit_amount_daily:,} words left today, "
            f"{text.available_amount:,} this month"
        )
        facts = {
            "workspace_id": workspace.id,
            "daily_remaining": verdict.daily_remaining,
            "daily_limit": text.limit_amount_daily,
            "monthly_available": text.available_amount,
            "can_generate": verdict.can_generate,
        }
        if verdict.can_generate:
            report.add(service, f"quota {workspace.name}", "ok", detail, facts=facts)
        else:
            # Not a setup fault: the credentials work, the words are spent.
            report.add(
                service,
                f"quota {workspace.name}",
                "warn",
                f"{detail}; cannot generate: {verdict.reason}",
                "Wait for the reset, or pick another workspace.",
                facts,
            )
    await _check_routes(neuroflash, default or workspaces[0].id, settings, report)
    await _rate_limit(runtime, service, report)


async def _check_routes(neuroflash: NeuroflashService, workspace_id: str, settings: Settings, report: Report) -> None:
    """Which chat path answers (found with requests the route refuses before generating: no words spent),
    and whether the model list's route exists (one read)."""
    service = "neuroflash"
    try:
        path, tried = await neuroflash.client.find_chat_path()
    except FlashsnapError as exc:
        failed(report, service, "chat path", exc)
    else:
        facts: dict[str, Any] = {"chat_path": path, "tried": tried, "pinned": settings.neuroflash_chat_path}
        how = "pinned by NEUROFLASH_CHAT_PATH" if settings.neuroflash_chat_path else "found"
        if path is not None:
            passed = (
                f" ({', '.join(p for p in tried if p != path)} answered the gateway's 404)" if len(tried) > 1 else ""
            )
            report.add(
                service, "chat path", "ok", f"POST {path} answers, {how} without generating{passed}", facts=facts
            )
        else:
            report.add(
                service,
                "chat path",
                "fail",
                f"no chat-completions route answers: {' and '.join(tried)} gave the gateway's 404",
                "Set NEUROFLASH_CHAT_PATH to the path your neuroflash documentation gives, "
                "or check NEUROFLASH_API_URL.",
                facts,
            )
    try:
        models = await neuroflash.client.models(workspace_id)
    except RouteMissing as exc:
        report.add(
            service,
            "model list",
            "warn",
            f"GET {exc.paths[0]} is not a route of this API: list_models cannot list, generate still works "
            "(neuroflash judges the model)",
            None,
            {"route_missing": exc.paths},
        )
    except FlashsnapError as exc:
        failed(report, service, "model list", exc)
    else:
        usable = sum(1 for m in models if m.available)
        report.add(
            service, "model list", "ok", f"{usable} of {len(models)} models on the plan", facts={"models": len(models)}
        )


async def _check_neuralsnap(runtime: Runtime, settings: Settings, report: Report) -> None:
    service = "neuralsnap"
    if settings.neuralsnap_api_key is None:
        report.add(
            service,
            "api key",
            "skip",
            "not configured: the NeuralSnap tools are off",
            "Set NEURALSNAP_API_KEY (ns_live_… or ns_test_…) to use them.",
        )
        return
    key = settings.neuralsnap_api_key.get_secret_value()
    kind = "test" if key.startswith("ns_test_") else "live"
    kept_at = runtime.clock.now()
    doc_key = runtime.neuralsnap().account.profile  # the service knows which account it is
    try:
        async with _shared_store(settings, runtime.clock) as store:
            kept = profile.read_profile(await store.get(doc_key), kept_at) if store is not None else None
            # One request either way: the plan (which counts the snapshots too), or, with the plan kept
            # (once per state store), the cheapest listing, to prove the key works today.
            if kept is None:
                plan = await runtime.neuralsnap().profile()
                total = plan.snapshot_count
                if store is not None:
                    await profile.keep(store, doc_key, plan, kept_at)
            else:
                plan = kept[1]
                _, total = await runtime.neuralsnap().recent(1)
    except FlashsnapError as exc:
        failed(report, service, "api key", exc)
        return
    saved = "" if total is None else f", {total:,} snapshots saved"
    report.add(service, "api key", "ok", f"{kind} key accepted{saved}", facts={"key_kind": kind, "snapshots": total})
    limits = ", ".join(f"{name} {value:,}" for name, value in plan.limits.items() if value is not None)
    facts = {"plan": plan.plan, "limits": plan.limits, "kept": kept is not None}
    report.add(service, "plan", "ok", f"{plan.plan}: {limits or 'no limits named'}", facts=facts)
    await _rate_limit(runtime, service, report)


@contextlib.asynccontextmanager
async def _shared_store(settings: Settings, clock: Clock) -> AsyncIterator[Store | None]:
    """The servers' state store, where the plan is kept; None when it cannot be opened (the state line says why)."""
    try:
        store = await open_state(settings, clock)
    except ConfigurationError:
        yield None
        return
    try:
        yield store
    finally:
        await store.aclose()


async def _rate_limit(runtime: Runtime, service: str, report: Report) -> None:
    gate = runtime.gates.get(service)
    if gate is None:
        return
    view = await gate.view()
    facts = {"limit": view.limit, "remaining": view.remaining, "resets_at": when(view.resets_at)}
    if view.limit is None or view.remaining is None:
        report.add(service, "rate limit", "ok", "no rate-limit headers in the answers", facts=facts)
    elif view.remaining == 0:
        report.add(
            service,
            "rate limit",
            "warn",
            f"0 of {view.limit:,} requests left until {when(view.resets_at)}",
            "Calls wait for the reset (or fail with retry_after_s); a higher plan raises the limit.",
            facts,
        )
    else:
        report.add(
            service,
            "rate limit",
            "ok",
            f"{view.remaining:,} of {view.limit:,} requests left until {when(view.resets_at)}",
            facts=facts,
        )


def _check_tools(settings: Settings, report: Report) -> None:
    try:
        selection = tool_selection(settings)
    except ConfigurationError as exc:
        report.add("tools", "selection", "fail", exc.message, "Fix FLASHSNAP_TOOLS / FLASHSNAP_EXCLUDE_TOOLS.")
        return
    off = f"; off: {', '.join(selection.off)}" if selection.off else ""
    report.add(
        "tools",
        "selection",
        "ok",
        f"{len(selection.enabled)} on: {', '.join(selection.enabled)}{off}",
        facts={"enabled": list(selection.enabled), "off": list(selection.off)},
    )
    _check_asking(settings, selection.enabled, report)


def _check_asking(settings: Settings, enabled: Sequence[str], report: Report) -> None:
    """What the user will be asked before, by tool: the operator's settings read back as behaviour."""
    words, bound = settings.confirm_words, settings.default_max_tokens
    if "generate" in enabled:
        plain = f"without max_tokens it sends {bound:,} tokens at most"
        if words == 0:
            report.add("asking", "generate", "ok", f"never asks (FLASHSNAP_CONFIRM_WORDS=0); {plain}")
        elif bound * consent.WORDS_PER_TOKEN > words:
            fit = math.floor(words / consent.WORDS_PER_TOKEN)
            report.add(
                "asking",
                "generate",
                "warn",
                f"asks above {words:,} words (prompt + max_tokens); the default bound, {bound:,} tokens "
                f"(~{bound * consent.WORDS_PER_TOKEN:,.0f} words), alone exceeds it, so every plain call is cut to fit",
                f"Set FLASHSNAP_DEFAULT_MAX_TOKENS to {fit:,} or less, or raise FLASHSNAP_CONFIRM_WORDS.",
            )
        else:
            report.add("asking", "generate", "ok", f"asks above {words:,} words (prompt + max_tokens); {plain}")
    if "crystallize" in enabled:
        detail = "never asks" if words == 0 else f"asks above {consent.crystallize_chars_unasked(words):,} characters"
        report.add("asking", "crystallize", "ok", detail)
    if "delete_snapshot" in enabled:
        detail = "asks every time" if settings.confirm_delete else "deletes unasked (FLASHSNAP_CONFIRM_DELETE=0)"
        report.add("asking", "delete_snapshot", "ok", detail)


async def run_checks(settings: Settings, clock: Clock | None = None) -> Report:
    """Every check, each bounded in time; one failing does not stop the others."""
    clock = clock or SystemClock()
    report = Report()
    if (line := access(settings)) is not None:
        report.add("http", "auth", *line)
    _check_tools(settings, report)
    await _check_state(settings, clock, report)
    # The upstream checks use a private in-memory store, so they always ask the token endpoint
    # (a token cached by a running server would prove nothing about the credentials today). A check serves no
    # call, so it opens no audit file either.
    probe = settings.model_copy(
        update={"state": "memory", "timeout_s": min(settings.timeout_s, 20.0), "audit_log": None}
    )
    alone = probe.model_copy(update={"team_file": None})  # the environment's account; the team's are checked next
    with anyio.move_on_after(120) as scope:
        async with open_runtime(alone, clock) as runtime:
            await _check_neuroflash(runtime, settings, report)
            await _check_neuralsnap(runtime, settings, report)
        await _check_accounts(settings, alone, clock, report)
    if scope.cancelled_caught:
        report.add("check", "time", "fail", "the checks took longer than 120 s", "Check the network and the API URLs.")
    return report


async def _check_accounts(settings: Settings, probe: Settings, clock: Clock, report: Report) -> None:
    """The same checks for each `[accounts.<name>]` of the team file, with its own credentials, each finding's
    item naming the account; nothing is spent (a token, the plan or one listing, as for the default account)."""
    try:
        found = accounts.from_team_file(settings.team_file)
    except ConfigurationError as exc:
        report.add("accounts", "team file", "fail", str(exc), "Fix the [accounts.<name>] table it names.")
        return
    for account in found:
        own, alone = account.settings(settings), account.settings(probe)
        checked = Report()
        async with open_runtime(alone, clock) as runtime:
            if own.neuroflash_configured:
                await _check_neuroflash(runtime, own, checked)
            if own.neuralsnap_api_key is not None:
                await _check_neuralsnap(runtime, own, checked)
        for finding in checked.findings:
            report.findings.append(replace(finding, item=f"account {account.name}: {finding.item}"))


@contextlib.contextmanager
def _environment(sandbox: bool) -> Iterator[Mapping[str, str]]:
    if not sandbox:
        yield os.environ
        return
    with sandbox_environment(os.environ) as environ:
        yield environ


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="flashsnap-mcp check",
        description="Try each configured service with its cheapest request; exit 0 only when all of it works.",
    )
    parser.add_argument("--sandbox", action="store_true", help="check against the built-in emulator")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    logs.configure("ERROR")  # the report is the output; failures are in it
    mask = logs.SecretMask()  # the upstreams' words in the findings may quote a secret or the token just obtained
    with _environment(args.sandbox) as environ:
        try:
            settings = Settings.from_env(environ, sandbox=args.sandbox)
        except ConfigurationError as exc:
            report = Report()
            report.add("config", "environment", "fail", exc.message, "Fix the variables named above.")
        else:
            logs.configure("ERROR", settings.secrets)
            mask = logs.SecretMask(settings.secrets)
            report = anyio.run(run_checks, settings)
            if args.sandbox:
                report.findings.insert(
                    0, Finding("mode", "sandbox", "ok", "checking the built-in emulator, not the real services")
                )
    if args.json:
        out = {"ok": report.ok, "version": __version__, "findings": [asdict(f) for f in report.findings]}
        print(mask.mask(json.dumps(out, indent=2)))  # noqa: T201 - the command's output
    else:
        print(mask.mask(render(report)))  # noqa: T201 - the command's output
    sys.exit(0 if report.ok else 1)
