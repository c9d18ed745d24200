"""Reading tool results in tests."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent

from server.tooling.calls import ERROR_META


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def data(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call."""
    assert not result.is_error, text(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


def error(result: CallToolResult) -> dict[str, Any]:
    """The machine-readable error of a failed call (and a check that the text carries its message)."""
    assert result.is_error, result
    assert result.structured_content is None  # error results never break the tool's output schema
    assert result.meta is not None, text(result)
    err: dict[str, Any] = result.meta[ERROR_META]
    assert err["message"] in text(result)
    return err
