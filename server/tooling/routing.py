"""Before a request runs: open the upstream account a reloaded team file routes its caller to, when it is new."""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from server import context
from server.runtime import Runtime


class OpenRoutedAccount:
    """Server middleware: a principal the team file (reloaded) routes to an account added since start finds it open.

    The accounts of the file the server started with are open already, so the plain call costs one lookup. An
    account whose credentials cannot be read stays closed (the log names why), and the call then fails as one to
    an unconfigured account does: `missing_credential`, naming what to set.
    """

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        runtime = ctx.lifespan_context
        caller = context.principal()
        if isinstance(runtime, Runtime) and caller is not None and caller.account is not None:
            await runtime.open_account(caller.account)
        return await call_next(ctx)
