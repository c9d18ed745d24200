"""The stderr log never shows a secret, whether its value is known or only its shape."""

from __future__ import annotations

import logging

import pytest
from mcp import Client

from server.observe.logs import SecretMask
from server.sandbox import Emulator, catalog
from tests.results import data


def test_known_secrets_and_secret_shapes_are_masked() -> None:
    mask = SecretMask(["hunter2-secret"])
    line = mask.mask(
        "client_secret=hunter2-secret&x=1 Authorization: Bearer abc.def ns_live_0123 "
        '{"access_token": "tok123"} hunter2-secret'
    )
    for secret in ("hunter2-secret", "abc.def", "ns_live_0123", "tok123"):
        assert secret not in line
    assert "x=1" in line


def test_tracebacks_are_masked_too() -> None:
    mask = SecretMask(["topsecret"])
    try:
        raise ValueError("leaked topsecret")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    mask.filter(record)
    assert "topsecret" not in (record.exc_text or "")
    assert "leaked ***" in (record.exc_text or "")


async def test_a_debug_session_logs_no_credential(
    client: Client, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        data(await client.call_tool("list_workspaces", {}))
        data(await client.call_tool("snapshot", {"name": "n", "core": "c"}))
    tokens = list(emulator.state.tokens)
    assert tokens
    for secret in (catalog.DEMO_CLIENT_SECRET, catalog.DEMO_API_KEY, *tokens):
        assert secret not in caplog.text
