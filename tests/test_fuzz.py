"""Arbitrary JSON arguments to every tool: a valid result or a validation error, never a crash,
and never an upstream request for input that is invalid."""

from __future__ import annotations

from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from server.app import create_app
from server.clock import FakeClock
from server.config import Settings
from server.sandbox import Emulator, EmulatorState
from server.tooling.calls import INTERNAL_ERROR
from tests.results import data, text

TOOLS = ["list_workspaces", "check_quota", "list_models", "generate", "snapshot", "search_snapshots", "get_snapshot"]
PARAMS = [
    "workspace_id", "provider", "include_unavailable", "model", "prompt", "messages", "system", "max_tokens",
    "temperature", "reasoning_effort", "name", "core", "type", "tags", "confidence", "significance_score",
    "emotion", "query", "limit", "id", "max_wait_s",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["gpt-4.1-mini", "openai", "Belief", "high", "user", ""]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
arguments = st.dictionaries(st.sampled_from(PARAMS) | st.text(max_size=12), json_values, max_size=6)


def is_rejection(tool: str, message: str) -> bool:
    """The tool refused its arguments before doing anything: a schema error or invalid_arguments."""
    return (message.startswith(f"Error executing tool {tool}: ") and "validation error" in message) or (
        "Correct the arguments" in message
    )


@pytest.mark.parametrize("tool", TOOLS)
def test_any_arguments_get_a_valid_answer_and_invalid_ones_send_nothing(
    emulator: Emulator, state: EmulatorState, clock: FakeClock, tool: str
) -> None:
    app = create_app(Settings.from_env(emulator.environment()), clock=clock)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(app)) as client:

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(args=arguments)
        def one_call(args: dict[str, Any]) -> None:
            before = sum(state.requests.values())
            result = portal.call(client.call_tool, tool, args)
            message = text(result)
            if result.is_error:
                assert message  # an answer a model can read
                assert INTERNAL_ERROR not in message, (args, message)  # never a crash
                if is_rejection(tool, message):
                    assert sum(state.requests.values()) == before, (args, message)
            else:
                assert result.structured_content is not None

        one_call()
        data(portal.call(client.call_tool, "list_workspaces", {}))  # still serving
