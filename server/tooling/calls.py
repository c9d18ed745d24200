"""What every tool call goes through: its wait budget, its progress, and the one place failures become results."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, InputRequiredResult, TextContent

from server import context
from server.auth import activity, callers
from server.context import Budget, Running
from server.errors import FlashsnapError, ShutdownCut
from server.observe.logs import SecretMask
from server.observe.metrics import NO_METRICS, Observer
from server.runtime import Runtime
from server.tooling import turns
from server.tooling.answers import MAX_DETAIL_CHARS, masked_cut
from server.tooling.spec import runtime

log = logging.getLogger("server.tools")

P = ParamSpec("P")
T = TypeVar("T")

INTERNAL_ERROR = (
    "Internal error in flashsnap-mcp: the call failed unexpectedly and nothing more can be said here. "
    "The details are in the server's log; calling the tool again may work."
)


ERROR_META = "io.flashsnap/error"
MAX_ERROR_TEXT_CHARS = 4_000  # the text of an error result: what happened and what to do (a list of workspaces fits)


class AskClient(Exception):
    """A tool needs the user's answer first: its call ends with this `input_required` result (2026-07-28)."""

    def __init__(self, result: InputRequiredResult) -> None:
        super().__init__("input required")
        self.result = result


def error_result(error: FlashsnapError, mask: SecretMask) -> CallToolResult:
    """An `isError` result: the text a model reads, and the same facts, machine-readable, in `_meta`.

    Not in `structuredContent`: the spec holds that to the tool's output schema, which
    describes success, and clients such as the MCP Inspector reject a result that breaks it.
    Upstream messages are quoted in both, so both pass through the secret mask; and both are bounded: the text
    at `MAX_ERROR_TEXT_CHARS`, each fact at `MAX_DETAIL_CHARS` (a partial text cut with a note saying so).
    """
    payload = {
        k: masked_cut(v, MAX_DETAIL_CHARS, mask) if isinstance(v, str) else v for k, v in error.payload().items()
    }
    return CallToolResult(
        content=[TextContent(type="text", text=masked_cut(str(error), MAX_ERROR_TEXT_CHARS, mask))],
        is_error=True,
        _meta={ERROR_META: payload},
    )


class Progress:
    """Progress notifications for one call, kept strictly increasing whoever reports them."""

    def __init__(self, ctx: Context[Runtime, Any]) -> None:
        self._ctx = ctx
        self._last = 0.0

    async def __call__(self, value: float | None, message: str) -> None:
        value = self._last + 1 if value is None or value <= self._last else value
        self._last = value
        await self._ctx.report_progress(value, None, message)


@contextmanager
def asking_user() -> Iterator[None]:
    """Marks the call as waiting for the user's answer: a shutdown meanwhile cut it before anything was sent."""
    running = context.running()
    if running is None:
        yield
        return
    running.asking = True
    yield
    # Not in a `finally`: a shutdown's cancel leaves the mark on, so the cut-off says nothing was sent.
    running.asking = False


class InFlight:
    """The tool calls running now, so a shutdown can cut those the grace period did not see finish."""

    def __init__(self) -> None:
        self._calls: set[Running] = set()

    def __len__(self) -> int:
        return len(self._calls)

    def cut(self) -> int:
        """Cut every running call: each answers with a `shutdown` error (its own result, not a dropped request)."""
        for running in self._calls:
            running.scope.cancel()
        return len(self._calls)


async def _by_principal(shared: Runtime, tool: str, outcome: str) -> None:
    """Count a named principal's call for /metrics and `status` (tokens, oauth: the team file's name or "other")."""
    caller = callers.current()
    if caller is None:
        return
    shared.metrics.principal_call(caller.label, tool, outcome)
    # Shielded and bounded: a call cut off still counts, and a slow store never holds its answer for long.
    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
        call = context.running()
        turns = activity.Turns(call.sent, call.turn_waited_s) if call is not None else activity.Turns()
        await activity.record(shared.store, caller.label, outcome, shared.clock.now(), turns)


def _cut_off(tool: str, read_only: bool, running: Running) -> ShutdownCut:
    rid = running.request_ids[-1] if running.request_ids else None
    if running.asking:
        return ShutdownCut(
            f"The server shut down while the user was being asked about {tool}; nothing was sent.",
            hint="Call it again once the server is back; the user will be asked again.",
            maybe_processed=False,
        )
    maybe = not read_only
    return ShutdownCut(
        f"The server shut down before {tool} finished (its grace period, FLASHSNAP_SHUTDOWN_GRACE_S, ran out).",
        hint=(
            "It may have reached the upstream: check before calling it again (the request id names it)."
            if maybe
            else "Nothing was changed; call it again once the server is back."
        ),
        request_id=rid,
        maybe_processed=maybe,
    )


Answer = CallToolResult | InputRequiredResult


@contextmanager
def running_request() -> Iterator[Running]:
    """The request served inside this block runs as one call: its tool (if any) notes its account, upstream
    request ids and waits there, for the request's audit record (`server.tooling.audited`)."""
    running = Running(anyio.CancelScope())
    with context.calling(running):
        yield running


def tool_call(
    fn: Callable[P, Awaitable[T]], *, in_flight: InFlight | None = None, read_only: bool = False
) -> Callable[P, Awaitable[T | Answer]]:
    """Wrap a tool: give it its wait budget and progress, turn failures into `isError` results.

    The SDK reads the tool's signature and output schema through `__wrapped__`, so the
    wrapper changes nothing a client sees but the errors. Registered in `in_flight`, a call that a
    shutdown cuts off answers with a `shutdown` error naming the upstream request it was in.
    """

    name = fn.__name__  # the tool's name (tools/*.py name each function after its tool)
    calls = in_flight if in_flight is not None else InFlight()

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T | Answer:
        # The request's own, when the audit trail opened one for its record (`running_request`).
        running = context.running() or Running(anyio.CancelScope())
        calls._calls.add(running)
        try:
            # The one writer of the call's values (server.context): here, and the session and budget below.
            with context.calling(running), running.scope:
                return await _call(*args, **kwargs)
        finally:
            calls._calls.discard(running)
        # Only the shutdown's cut ends here (its scope swallowed its own cancel; a client's cancel propagates).
        log.info("tool %s: cut off by the shutdown", name)
        return error_result(_cut_off(name, read_only, running), SecretMask())

    async def _call(*args: P.args, **kwargs: P.kwargs) -> T | Answer:
        mask = SecretMask()
        observer: Observer = NO_METRICS
        shared: Runtime | None = None
        started, outcome = time.perf_counter(), "ok"
        try:
            ctx = kwargs.get("ctx")
            if isinstance(ctx, Context):
                shared = runtime(ctx)
                mask = shared.mask
                observer = shared.metrics
                max_wait = kwargs.get("max_wait_s")
                wait_s = float(max_wait) if isinstance(max_wait, int | float) else shared.settings.max_wait_s
                budget = Budget(shared.clock, shared.clock.now() + wait_s, Progress(ctx))
                with context.serving(turns.turn_of(ctx), budget):
                    return await fn(*args, **kwargs)
            return await fn(*args, **kwargs)
        except AskClient as asked:
            outcome = "input_required"
            return asked.result
        except FlashsnapError as exc:
            outcome = exc.code
            log.info("tool %s: %s: %s", fn.__name__, exc.code, exc.message)
            return error_result(exc, mask)
        except Exception:
            outcome = "internal_error"
            log.exception("tool %s crashed", fn.__name__)
            return CallToolResult(content=[TextContent(type="text", text=INTERNAL_ERROR)], is_error=True)
        finally:
            observer.tool_call(name, outcome, time.perf_counter() - started)
            if shared is not None:
                await _by_principal(shared, name, outcome)

    functools.update_wrapper(_call, fn)
    return call
