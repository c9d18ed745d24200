"""The one place where failures become `isError` tool results a model can act on."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.types import CallToolResult, TextContent

from server.errors import FlashsnapError

log = logging.getLogger("server.tools")

P = ParamSpec("P")
T = TypeVar("T")

INTERNAL_ERROR = (
    "Internal error in flashsnap-mcp: the call failed unexpectedly and nothing more can be said here. "
    "The details are in the server's log; calling the tool again may work."
)


def error_result(error: FlashsnapError) -> CallToolResult:
    """An `isError` result: the text a model reads, and the same facts as structured content."""
    return CallToolResult(
        content=[TextContent(type="text", text=str(error))],
        structured_content={"error": error.payload()},
        is_error=True,
    )


def guarded(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | CallToolResult]]:
    """Wrap a tool so that anticipated failures become error results and crashes a short notice.

    The SDK reads the tool's signature and output schema through `__wrapped__`, so the
    wrapper changes nothing a client sees but the errors.
    """

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T | CallToolResult:
        try:
            return await fn(*args, **kwargs)
        except FlashsnapError as exc:
            log.info("tool %s: %s: %s", fn.__name__, exc.code, exc.message)
            return error_result(exc)
        except Exception:
            log.exception("tool %s crashed", fn.__name__)
            return CallToolResult(content=[TextContent(type="text", text=INTERNAL_ERROR)], is_error=True)

    return call
