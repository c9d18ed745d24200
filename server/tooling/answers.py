"""What every answer lets out: errors masked, cut to a bound and never a traceback; no secret in any result.

Tool failures are results (`server/tooling/calls.py`); this is the other requests' last word: a resource read, a
prompt, a completion. The SDK quotes what it was sent ("Unknown resource: <the whole URI>", 100,000 characters of
it) and answers an exception it did not expect with its text and code 0; here the text is cut with a note and an
unexpected exception becomes the spec's internal error, its traceback going to stderr only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR
from pydantic import BaseModel, ValidationError

from server import known_secrets
from server.observe.logs import SecretMask

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1_000  # an error message, as a person or a model reads it: what failed, and what to do
# A text an error result carries besides its message (the generation's text before the failure): enough to resume
# from, and a fraction of FLASHSNAP_MAX_RESULT_TOKENS' default, so an endless stream cannot flood the context.
MAX_DETAIL_CHARS = 20_000


def cut(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` at most `limit` characters, a cut saying how much was left out."""
    if len(text) <= limit:
        return text
    note = f" … [cut here: {len(text) - limit:,} more characters not shown]"
    return text[: max(0, limit - len(note))] + note


def masked_cut(text: str, limit: int, mask: SecretMask) -> str:
    """`text` masked and cut to `limit`: only its head is masked (a secret that straddles the cut included), so a
    16-million-character text costs no more than a short one."""
    head = mask.mask(text[: limit + 1024])
    if len(text) <= limit + 1024 and len(head) <= limit:
        return head
    note = f" … [cut here: {max(0, len(text) - limit):,} more characters not shown]"
    return head[: max(0, limit - len(note))] + note


class BoundedErrors:
    """Server middleware: the JSON-RPC errors of every request are masked and bounded; nothing unexpected leaks."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """The handler's answer; its failure as a bounded JSON-RPC error.

        Raises:
            MCPError: the handler's own error, masked and cut; or INTERNAL_ERROR for an exception it did not expect.
            ValidationError: as the handler raised it (the SDK answers invalid params, quoting nothing).
        """
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            mask = _mask(ctx)
            raise MCPError(exc.error.code, cut(mask.mask(exc.error.message)), _bounded(exc.error.data, mask)) from exc
        except ValidationError:
            raise  # the SDK answers it as invalid params, with no pydantic text
        except Exception as exc:
            log.exception("%s failed unexpectedly", ctx.method)
            raise MCPError(INTERNAL_ERROR, f"internal error in {ctx.method}; the server's log has the details") from exc
        return _masked(ctx.method, result)


# The answers that carry the upstreams' words: a secret one of them quoted is masked by its value (only by value:
# a pattern would rewrite what the user saved, such as a snapshot that mentions "Bearer").
QUOTING = frozenset({"tools/call", "resources/read", "prompts/get", "completion/complete"})


def _masked(method: str, result: HandlerResult) -> HandlerResult:
    """`result`, with every secret this process holds masked where an upstream's words carried one."""
    if method not in QUOTING or result is None:
        return result
    values = known_secrets.held()
    if not values:
        return result
    dumped = (
        result.model_dump(by_alias=True, exclude_none=True, mode="json") if isinstance(result, BaseModel) else result
    )
    if not any(secret in json.dumps(dumped, ensure_ascii=False) for secret in values):
        return result
    masked: dict[str, Any] = known_secrets.mask_deep(dumped, values)
    return masked


def _mask(ctx: ServerRequestContext[Any, Any]) -> SecretMask:
    shared = getattr(ctx.lifespan_context, "mask", None)
    return shared if isinstance(shared, SecretMask) else SecretMask()


def _bounded(data: Any, mask: SecretMask) -> Any:
    """An error's `data`: its texts (the SDK puts the URI asked for there too) masked and cut, one level deep."""
    if isinstance(data, str):
        return cut(mask.mask(data))
    if isinstance(data, dict):
        return {key: cut(mask.mask(value)) if isinstance(value, str) else value for key, value in data.items()}
    return data
