"""`flashsnap-mcp check`: what works, what to fix, the exit status, and never a secret."""

from __future__ import annotations

import json
import subprocess
from unittest.mock import ANY

import pytest

from server.cli import status
from server.cli.check import _check_tools, run_checks
from server.cli.findings import Report, render
from server.clock import FakeClock
from server.config import Settings
from server.runtime import open_runtime, open_state
from server.sandbox import Emulator, EmulatorState, catalog
from tests.test_stdio import COMMAND, params

SECRET = "canary-client-secret-0123456789"
KEY = "ns_live_canary0123456789abcdef"


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "check", *args],
        env=params(env=env).env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_check_in_sandbox_mode_shows_what_works_and_exits_0() -> None:
    done = check("--sandbox")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for fact in ("token obtained", "valid for 4 h", "Marketing Team", "[default]", "words left today",
                 "requests left until", "everything configured works"):  # fmt: skip
        assert fact in out, out
    for secret in (catalog.DEMO_CLIENT_SECRET, catalog.DEMO_API_KEY):
        assert secret not in out + done.stderr


def test_check_json_is_machine_readable() -> None:
    done = check("--sandbox", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    found = {(f["service"], f["item"]): f for f in report["findings"]}
    assert found[("neuroflash", "token")]["facts"]["expires_in_s"] > 14_000
    assert found[("neuralsnap", "rate limit")]["facts"]["remaining"] == 99


def test_nothing_configured_is_not_a_working_setup() -> None:
    done = check()
    assert done.returncode == 1
    assert "no service is configured" in done.stdout
    assert "Set NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET" in done.stdout


def test_an_invalid_environment_is_reported_without_echoing_it() -> None:
    done = check(env={"NEURALSNAP_API_KEY": "sk-canary-not-a-neuralsnap-key"})
    assert done.returncode == 1
    assert "NEURALSNAP_API_KEY: Value error, must start with ns_live_ or ns_test_" in done.stdout
    assert "sk-canary" not in done.stdout + done.stderr


async def test_rejected_credentials_name_exactly_what_to_fix_and_cost_one_request_each(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    env = {**emulator.environment(), "NEUROFLASH_CLIENT_SECRET": SECRET, "NEURALSNAP_API_KEY": KEY}
    report = await run_checks(Settings.from_env(env), clock)
    assert not report.ok
    found = {(f.service, f.item): f for f in report.findings}
    token = found[("neuroflash", "token")]
    assert token.status == "fail"
    assert "NEUROFLASH_CLIENT_SECRET" in (token.fix or "")
    key = found[("neuralsnap", "api key")]
    assert key.status == "fail"
    assert "NEURALSNAP_API_KEY" in (key.fix or "")
    # Rejected credentials are final: one token request, one NeuralSnap request, nothing retried.
    assert state.count("token") == 1
    # (The first check of a state store reads the plan, which proves the key as the listing did: one request.)
    assert state.count("snapshot_list") + state.count("profile") == 1
    assert state.count("workspaces") == 0
    shown = render(report)
    assert SECRET not in shown
    assert KEY not in shown


@pytest.mark.parametrize("default", ["no-such-workspace", None])
async def test_a_workspace_setting_that_does_not_fit_the_account_is_explained(
    emulator: Emulator, clock: FakeClock, default: str | None
) -> None:
    env = {k: v for k, v in emulator.environment().items() if not k.startswith("NEURALSNAP_")}
    state = emulator.state
    state.add_workspace("ws_second", "Second")
    if default:
        env["NEUROFLASH_WORKSPACE_ID"] = default
    report = await run_checks(Settings.from_env(env), clock)
    found = {(f.service, f.item): f for f in report.findings}
    workspaces = found[("neuroflash", "workspaces")]
    assert "ws_second" in (workspaces.fix or "")
    assert workspaces.status == ("fail" if default else "warn")
    assert report.ok is (default is None)
    assert found[("neuralsnap", "api key")].status == "skip"


async def test_check_reads_the_plan_once_per_state_store_and_servers_start_their_gate_from_it(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    settings = Settings.from_env(emulator.environment())
    first = {(f.service, f.item): f for f in (await run_checks(settings, clock)).findings}
    assert first[("neuralsnap", "plan")].facts == {"plan": "free", "limits": ANY, "kept": False}
    second = {(f.service, f.item): f for f in (await run_checks(settings, clock)).findings}
    assert second[("neuralsnap", "plan")].facts["kept"] is True
    assert state.count("profile") == 1  # once per state store; the second check proved the key by a listing
    assert state.count("snapshot_list") == 1
    # A server opening the store starts NeuralSnap's window from the plan's rate: no probe one request at a time.
    state.set_rate_limit(100, 3600.0)
    async with open_runtime(settings.model_copy(update={"store": "sqlite"}), clock) as runtime:
        view = await runtime.gates["neuralsnap"].view()
    assert view.limit == 100
    store = await open_state(settings, clock)
    try:
        assert "  plan         free: snapshots 1000" in status.render(await status.gather(store, clock))
    finally:
        await store.aclose()


async def test_a_starter_plan_fails_the_key_check_with_the_plan_named_after_one_request(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    state.variants.plan = "starter"
    report = await run_checks(Settings.from_env(emulator.environment()), clock)
    key = {(f.service, f.item): f for f in report.findings}[("neuralsnap", "api key")]
    assert key.status == "fail"
    assert key.facts["code"] == "permission_denied"
    assert state.count("profile") == 1


ASKING: list[tuple[dict[str, str], list[tuple[str, str, str]]]] = [
    (
        {},
        [
            ("generate", "ok", "asks above 1,000 words"),
            ("crystallize", "ok", "asks above 2,664 characters"),
            ("delete_snapshot", "ok", "asks every time"),
        ],
    ),
    ({"FLASHSNAP_CONFIRM_WORDS": "500"}, [("generate", "warn", "alone exceeds it")]),
    ({"FLASHSNAP_CONFIRM_WORDS": "0"}, [("generate", "ok", "never asks"), ("crystallize", "ok", "never asks")]),
    ({"FLASHSNAP_CONFIRM_DELETE": "off"}, [("delete_snapshot", "ok", "deletes unasked")]),
]


@pytest.mark.parametrize(("env", "expected"), ASKING)
def test_check_says_what_will_be_asked(env: dict[str, str], expected: list[tuple[str, str, str]]) -> None:
    report = Report()
    _check_tools(Settings.from_env({"FLASHSNAP_TOOLSETS": "all", **env}), report)
    asking = {f.item: f for f in report.findings if f.service == "asking"}
    for item, mark, says in expected:
        assert asking[item].status == mark
        assert says in asking[item].detail
    if "500" in env.values():
        assert (
            asking["generate"].fix
            == "Set FLASHSNAP_DEFAULT_MAX_TOKENS to 666 or less, or raise FLASHSNAP_CONFIRM_WORDS."
        )
