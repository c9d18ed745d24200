"""The audit trail: server middleware writing one record per tools/call, resources/read and prompts/get.

It runs outside the tool filter and argument checks, so a call refused there is recorded too, and around
the call wrapper, whose running call (`running_request`) gathers the account, upstream request ids and waits.
The outcome is read from what the client gets: `ok`, the error code in the result's error metadata (or in
a resource's error data), `input_required`, `cancelled` when the request was cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from server.observe.audit import AuditLog
from server.tooling.calls import ERROR_META, INTERNAL_ERROR, running_request

AUDITED = frozenset({"tools/call", "resources/read", "prompts/get"})
CANCELLED = "cancelled"


def outcome_of(method: str, result: HandlerResult) -> str:
    """`ok`, or the code a failed tool result carries in its error metadata (a read or prompt fails by raising).

    A failed result without one is the wrapper's crash answer (`internal_error`, as the metrics name it) or
    the SDK's own (an unknown tool): `error`, the code of an error nobody classified.
    """
    if method != "tools/call":
        return "ok"
    body = result.model_dump(by_alias=True, mode="json") if isinstance(result, BaseModel) else result or {}
    if body.get("resultType") == "input_required" or "inputRequests" in body:
        return "input_required"
    try:
        answer = CallToolResult.model_validate(body)
    except ValidationError:
        return "error"
    if not answer.is_error:
        return "ok"
    code = ((answer.meta or {}).get(ERROR_META) or {}).get("code")
    if isinstance(code, str):
        return code
    texts = [block.text for block in answer.content if isinstance(block, TextContent)]
    return "internal_error" if texts == [INTERNAL_ERROR] else "error"


def refusal_of(error: MCPError) -> str:
    """The code of a refused read or prompt: this server's own in the error's data, else the JSON-RPC kind."""
    code = error.data.get("code") if isinstance(error.data, Mapping) else None
    if isinstance(code, str):
        return code
    return "invalid_arguments" if error.code == INVALID_PARAMS else "internal_error"


def words_of(result: HandlerResult) -> int | None:
    """The words a call spent, where its result says (a generation's `words_used`)."""
    # A middleware inside may hand back the result as a model (the trust label does) or as the wire's mapping.
    body = result.model_dump(by_alias=True, mode="json") if isinstance(result, BaseModel) else result
    words = ((body if isinstance(body, Mapping) else {}).get("structuredContent") or {}).get("words_used")
    return words if isinstance(words, int) and not isinstance(words, bool) else None


class AuditTrail:
    """Server middleware: exactly one record per audited request, whatever ends it (a cancel included)."""

    def __init__(self, template_of: Callable[[str], str | None]) -> None:
        self.template_of = template_of  # a resource URI -> the template it reads (the record's `tool`)

    def _target(self, method: str, params: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any] | None]:
        if method == "resources/read":
            uri = params.get("uri")
            return (self.template_of(uri) if isinstance(uri, str) else None), {"uri": uri}
        name, arguments = params.get("name"), params.get("arguments")
        return (name if isinstance(name, str) else None), (arguments if isinstance(arguments, Mapping) else {})

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        audit: AuditLog | None = getattr(ctx.lifespan_context, "audit", None)
        if audit is None or ctx.method not in AUDITED:
            return await call_next(ctx)
        tool, arguments = self._target(ctx.method, ctx.params or {})
        outcome, result = CANCELLED, None
        with running_request() as running:
            try:
                result = await call_next(ctx)
                outcome = outcome_of(ctx.method, result)
                return result
            except MCPError as exc:
                outcome = refusal_of(exc)
                raise
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:
                outcome = "internal_error"
                raise
            finally:
                audit.record(
                    method=ctx.method,
                    tool=tool,
                    outcome=outcome,
                    principal=audit.caller(),
                    account=running.account,
                    request_ids=running.request_ids,
                    words=words_of(result),
                    wait_s=running.waited_s,
                    arguments=arguments,
                )
