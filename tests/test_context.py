"""The values of a tool call (server/context.py): what each getter says inside a call and outside one."""

from __future__ import annotations

from types import SimpleNamespace

import anyio
import pytest
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from server import context
from server.auth.callers import TEAM_ISSUER, identify
from server.auth.team import NO_TEAM
from server.clock import FakeClock
from server.context import Budget, Principal, Running
from server.tooling.turns import turn_of


def test_outside_a_call_there_is_no_call_no_wait_one_shared_session_and_nobody() -> None:
    clock = FakeClock()
    assert context.running() is None
    assert context.wait_budget(clock).left() == 0
    assert context.turn() == context.ANYONE
    assert context.request_ids() == []
    context.note_request_id("req-1")  # noted for no call: nothing to keep it
    assert context.principal() is None


async def test_inside_a_call_its_values_are_seen_and_gone_after_it() -> None:
    clock = FakeClock()
    call = Running(anyio.CancelScope())
    with context.calling(call):
        assert context.running() is call
        with context.serving(context.Turn("session A", "anonymous"), Budget(clock, clock.now() + 30)):
            assert context.turn() == context.Turn("session A", "anonymous")
            assert context.wait_budget(clock).left() == 30
            assert context.running() is call  # entering the session keeps the call
        assert context.turn() == context.ANYONE
    assert context.running() is None


async def test_a_call_notes_each_upstream_request_once_newest_last() -> None:
    call = Running(anyio.CancelScope())
    with context.calling(call):
        for rid in ("a", "a", "b", "a"):
            context.note_request_id(rid)
        assert context.request_ids() == ["a", "b", "a"]
    assert call.request_ids == ["a", "b", "a"]  # what the shutdown's cut-off answer names


@pytest.mark.parametrize(
    ("claims", "subject", "expected"),
    [
        (None, None, Principal("client-1")),
        ({"iss": "https://id.example"}, "user-7", Principal("client-1", "https://id.example", "user-7")),
    ],
)
def test_the_caller_is_whom_the_sdks_bearer_auth_authenticated(
    claims: dict[str, str] | None, subject: str | None, expected: Principal
) -> None:
    token = AccessToken(token="t", client_id="client-1", scopes=[], claims=claims, subject=subject)
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        assert context.principal() == expected
    finally:
        auth_context_var.reset(reset)


@pytest.mark.parametrize(
    ("principal", "other", "same"),
    [("alice", "alice", True), ("alice", "bob", False)],
)
def test_calls_take_their_turn_as_their_principal_whatever_their_session(
    principal: str, other: str, same: bool
) -> None:
    """Two sessions of one principal share one turn; two principals have one each (tokens, oauth modes). Each
    transport's key without a team is tested through real transports in tests/test_fairness.py."""

    def key_of(name: str, session: str) -> str:
        token = identify(AccessToken(token="t", client_id=name, subject=name, scopes=[], claims={"iss": TEAM_ISSUER}),
                         NO_TEAM)  # fmt: skip
        reset = auth_context_var.set(AuthenticatedUser(token))
        try:
            request = SimpleNamespace(headers={"mcp-session-id": session}, query_params={})
            return turn_of(SimpleNamespace(request_context=SimpleNamespace(request=request))).key  # type: ignore[arg-type]
        finally:
            auth_context_var.reset(reset)

    assert (key_of(principal, "s1") == key_of(other, "s2")) is same
