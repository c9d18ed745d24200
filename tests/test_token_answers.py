"""Every token answer RFC 6749 allows, and what real servers send, served by the emulator (Variants.token_answer).

Issue 18, row 4: an answer without `expires_in` made every neuroflash tool fail ("safe to call again in a moment")
after 3 token requests each, and `check` said neuroflash was down. It is a token, taken for DEFAULT_LIFETIME_S
(the refresh on a 401 covers a token that dies sooner). An OAuth error in a 200 is a rejection: final, never retried.
"""

from __future__ import annotations

import dataclasses

import anyio
import pytest
from mcp import Client

from server.cli.check import run_checks
from server.clock import FakeClock
from server.config import Settings
from server.credentials.tokens import DEFAULT_LIFETIME_S
from server.sandbox import Emulator, EmulatorState
from server.sandbox.variants import Variants
from tests.results import data, error

# (answer, the lifetime the token is taken for)
TOKENS = [
    ("standard", 14_399),
    ("no_expires_in", DEFAULT_LIFETIME_S),
    ("string_expires_in", 14_399),
    ("lowercase_type", 14_399),
]


def use(state: EmulatorState, answer: str) -> None:
    state.variants = dataclasses.replace(Variants(), token_answer=answer)  # type: ignore[arg-type]


async def call(client: Client, tool: str = "list_workspaces") -> None:
    with anyio.fail_after(30):
        data(await client.call_tool(tool, {}))


@pytest.mark.parametrize(("answer", "lifetime"), TOKENS)
async def test_every_token_answer_gives_a_token_with_one_request(
    client: Client, state: EmulatorState, answer: str, lifetime: float
) -> None:
    use(state, answer)
    for tool in ("list_workspaces", "check_quota", "list_models", "list_workspaces"):
        await call(client, tool)
    assert state.count("token") == 1
    assert state.count_status("workspaces", 401) == 0


@pytest.mark.parametrize(("answer", "lifetime"), TOKENS)
async def test_check_reports_the_lifetime_the_token_is_taken_for(
    emulator: Emulator, state: EmulatorState, clock: FakeClock, answer: str, lifetime: float
) -> None:
    use(state, answer)
    env = {k: v for k, v in emulator.environment().items() if not k.startswith("NEURALSNAP_")}
    report = await run_checks(Settings.from_env(env), clock)
    token = next(f for f in report.findings if (f.service, f.item) == ("neuroflash", "token"))
    assert token.status == "ok", token.detail
    assert token.facts["lifetime_s"] == round(lifetime)
    assert state.count("token") == 1


async def test_a_token_without_expires_in_is_renewed_before_the_default_lifetime_ends(
    client: Client, state: EmulatorState, clock: FakeClock
) -> None:
    use(state, "no_expires_in")
    await call(client)
    clock.advance(DEFAULT_LIFETIME_S - 10)  # inside the mandatory window of the assumed lifetime
    await call(client)
    assert state.count("token") == 2
    assert state.count_status("workspaces", 401) == 0


async def test_a_token_without_expires_in_that_dies_early_is_replaced_on_its_401(
    client: Client, state: EmulatorState
) -> None:
    use(state, "no_expires_in")
    await call(client)
    state.expire_tokens()  # the real lifetime was shorter than assumed
    await call(client)
    assert state.count("token") == 2
    assert state.count_status("workspaces", 401) == 1  # one refusal, one fresh token, one replay


async def test_an_oauth_error_in_a_200_is_a_rejection_never_retried(client: Client, state: EmulatorState) -> None:
    use(state, "error_in_200")
    with anyio.fail_after(30):
        err = error(await client.call_tool("list_workspaces", {}))
    assert err["code"] == "credentials_rejected"
    assert "invalid_client" in err["message"]
    assert "NEUROFLASH_CLIENT_SECRET" in err["hint"]
    assert state.count("token") == 1  # final: no retry with backoff
    assert state.count("workspaces") == 0


async def test_check_names_an_oauth_error_in_a_200_as_rejected_credentials(
    emulator: Emulator, state: EmulatorState, clock: FakeClock
) -> None:
    use(state, "error_in_200")
    env = {k: v for k, v in emulator.environment().items() if not k.startswith("NEURALSNAP_")}
    report = await run_checks(Settings.from_env(env), clock)
    token = next(f for f in report.findings if (f.service, f.item) == ("neuroflash", "token"))
    assert token.status == "fail"
    assert token.facts["code"] == "credentials_rejected"
    assert "invalid_client" in token.detail
    assert "down" not in (token.fix or "")
    assert "NEUROFLASH_CLIENT_SECRET" in (token.fix or "")
    assert state.count("token") == 1
