"""Asking the user before a call deletes data or could spend much: elicitation, else a confirm-first result.

Only when it matters: a plain generate is bounded under the threshold instead (`fitted_max_tokens`), and
everything that costs nothing runs before the question (`ask_first`'s `before`), so a call that would be
refused is refused without one. How the question travels depends on the client:

- a 2025-11-25 client that declared `elicitation` and holds a connection the server can send on (stdio,
  SSE, Streamable HTTP with a session, taking event streams) is asked mid-call with `elicitation/create`;
- a 2026-07-28 client that declared it gets an `input_required` result carrying the question, and calls
  again with the answer (the SDK seals the `requestState` we mint, binding it to the tool and arguments);
- any other client (no capability, a 2025-11-25 client on stateless HTTP or taking only JSON replies,
  which cannot receive a pushed request, or one that answers the question with an error) gets a
  `confirmation_required` error: what would happen, and to call again with `confirm: true` once the user
  agreed. `confirm` counts only for such clients, so a model that can be asked cannot skip the question.

Only a JSON `true` is a yes. Anything else sends nothing upstream and says what the question got, never
that a person saw it: some hosts answer questions themselves.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
from mcp.server.elicitation import AcceptedElicitation, render_elicitation_schema
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from server.auth import callers
from server.config import Settings
from server.errors import ConfirmationRequired, Declined, NotConfirmed
from server.runtime import Runtime
from server.state.layout import consent_key
from server.state.store import KEEP, Change, Doc
from server.tooling.calls import AskClient, asking_user

# The rule of thumb OpenAI publishes for English ("100 tokens ~= 75 words"), which neuroflash's models share;
# and its other half, about 4 characters a token. Both are stated in the README with the threshold.
WORDS_PER_TOKEN = 0.75
CHARS_PER_TOKEN = 4

# A human answers the question, not a program: long enough to read it, short enough that a call never hangs.
ANSWER_TIMEOUT_S = 600.0
# A question asked in an `input_required` round may be answered once, within this long of being asked: the state
# we mint carries the deadline (the SDK's seal covers it), and the used mark lives until it, never longer. So a
# mark deleted from the store lets a used yes, with its sealed state and the same arguments, be replayed only
# until the question's own deadline.
ANSWER_TTL_S = 600.0

ROUNDS_VERSION = "2026-07-28"  # the first protocol version whose tools/call carries questions in its result
ANSWER_KEY = "confirm"  # the key of our one question in `inputRequests` / `inputResponses`

How = Literal["push", "rounds"] | None


class Confirmation(BaseModel):
    """The form the user sees: one box, ticked. Only a JSON `true` for it is a yes: accepting with it unticked,
    without it, or with `"yes"`, `"true"` or `1` (strict: no coercion) is a no, in both eras alike."""

    confirm: bool = Field(default=True, strict=True, title="Go ahead", description="Leave ticked to go ahead.")


# Set on the ASGI scope by server/transports/accept.py for a client that takes only JSON replies: a pushed
# question has nowhere to travel in a JSON body, so such a client cannot be asked mid-call.
REPLY_IN_JSON = "flashsnap.reply_in_json"

# Below this many tokens of room under the threshold a generate asks instead of sending a stub of an answer.
MIN_FITTED_TOKENS = 100


def generate_words(input_words: int, max_tokens: int) -> float:
    """The most words a generate could spend, in the reading that never under-counts (upstream contract):
    the request's own words plus `max_tokens` at 0.75 words a token."""
    return input_words + max_tokens * WORDS_PER_TOKEN


def fitted_max_tokens(default: int, threshold: int, input_words: int) -> int:
    """The `max_tokens` a generate sends when none was given: `default`, lowered so the whole estimate stays
    within `threshold` (0: no threshold). Where fewer than `MIN_FITTED_TOKENS` would fit, `default`: that call
    asks, rather than sending a stub of an answer unasked."""
    if threshold <= 0:
        return default
    fit = math.floor((threshold - input_words) / WORDS_PER_TOKEN)
    return min(default, fit) if fit >= MIN_FITTED_TOKENS else default


def crystallize_tokens(text: str) -> int:
    """The most crystallize tokens a text could spend: what NeuralSnap reads, at 4 characters a token, and at
    most as much again in the snapshots it writes back (a crystallization condenses; both are charged)."""
    return 2 * math.ceil(len(text) / CHARS_PER_TOKEN)


def crystallize_chars_unasked(threshold: int) -> int:
    """The longest text `crystallize` sends without asking, for the instructions and the README."""
    return CHARS_PER_TOKEN * math.floor(threshold / WORDS_PER_TOKEN / 2)


def over(words: float, threshold: int) -> bool:
    """Whether a call that could spend `words` must ask first (`threshold` 0: never)."""
    return threshold > 0 and words > threshold


def confirm_words(settings: Settings) -> int:
    """The words above which a call asks first: the caller's own (team file), else FLASHSNAP_CONFIRM_WORDS."""
    caller = callers.current()
    own = caller.confirm_words if caller is not None else None
    return settings.confirm_words if own is None else own


def confirm_delete(settings: Settings) -> bool:
    """Whether a deletion asks first: the caller's own (team file), else FLASHSNAP_CONFIRM_DELETE."""
    caller = callers.current()
    own = caller.confirm_delete if caller is not None else None
    return settings.confirm_delete if own is None else own


def how_to_ask(ctx: Context[Runtime, Any]) -> How:
    """How this client can be asked, if at all (see the module's docstring)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (the shape before modes existed) means form; url-only does not.
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return None
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, ROUNDS_VERSION):
        return "rounds"  # the question travels in the result: JSON replies and stateless HTTP carry it
    replies_in_json = bool(getattr(ctx.request_context.request, "scope", {}).get(REPLY_IN_JSON))
    return "push" if ctx.session.can_send_request and not replies_in_json else None


Check = Callable[[], Awaitable[object]]


async def ask_first(
    ctx: Context[Runtime, Any], question: str, *, confirm: bool | None, setting: str, before: Check | None = None
) -> None:
    """Return once the user agreed to what `question` describes; otherwise nothing more happens.

    `before` runs the checks that cost nothing (a read that proves the call can succeed) once it is certain the
    question will be put, so a call that would be refused anyway is refused without one. `setting` is the
    operator's switch for this question, named in a decline.

    Raises:
        ConfirmationRequired: the client cannot ask the user, and the call did not carry `confirm: true`.
        Declined: the question was declined, cancelled, left unticked, or not answered in time.
        NotConfirmed: a yes that cannot be recorded as used now (the shared state store is down).
        AskClient: a 2026-07-28 client is to put the question to the user and call again with the answer.
        FlashsnapError: what `before` raises: the call cannot succeed (nothing was asked).
    """
    how = how_to_ask(ctx)
    if how is None:
        if confirm is True:
            return
        if before is not None:
            await before()
        raise ConfirmationRequired(
            f"Not done yet: this needs the user's agreement first. {question}",
            hint="Ask the user; if they agree, call again with the same arguments and confirm: true.",
        )
    if how == "push":
        if before is not None:
            await before()
        await _push(ctx, question, confirm=confirm, setting=setting)
    else:
        await _rounds(ctx, question, setting=setting, before=before)


async def _push(ctx: Context[Runtime, Any], question: str, *, confirm: bool | None, setting: str) -> None:
    """Ask mid-call with `elicitation/create` (2025-11-25).

    A client that declared the capability but answers with an error (its host cannot show a form, or its reply
    could not be read) is one that cannot ask: it gets the confirm-first result, and its `confirm: true` counts.

    Raises:
        ConfirmationRequired: the client could not show the question, and the call did not carry `confirm: true`.
        Declined: the answer was not a yes, or none came in time.
    """
    try:
        with anyio.move_on_after(ANSWER_TIMEOUT_S) as waited, asking_user():
            answer = await ctx.elicit(question, Confirmation)
    except MCPError as exc:
        if confirm is True:
            return
        raise ConfirmationRequired(
            f"Not done yet: the client could not show the user the question (it answered with error "
            f"{exc.error.code}), so nothing was done. {question}",
            hint="Ask the user yourself; if they agree, call again with the same arguments and confirm: true.",
        ) from None
    except ValueError:  # the answer's `confirm` is not a JSON boolean: "yes", "true", 1 are not a yes
        raise Declined(_not_agreed("not_boolean", setting)) from None
    if waited.cancelled_caught:
        raise Declined(_not_agreed("timeout", setting))
    if not isinstance(answer, AcceptedElicitation):
        raise Declined(_not_agreed(answer.action, setting))
    # Only a box left ticked is a yes: a client that sends no value for it has not said yes.
    if not ("confirm" in answer.data.model_fields_set and answer.data.confirm is True):
        raise Declined(_not_agreed("unticked", setting))


async def _rounds(ctx: Context[Runtime, Any], question: str, *, setting: str, before: Check | None) -> None:
    """Ask through an `input_required` result and read the answer when the client calls again (2026-07-28).

    Raises:
        Declined: the answer to this very question is no.
        NotConfirmed: the yes cannot be marked used where every process looks (the shared store is down).
        AskClient: not asked yet, asked something else, or the answer was used already: ask (again).
        FlashsnapError: what `before` raises, before the question is put.
    """
    digest = hashlib.sha256(question.encode()).hexdigest()[:32]
    runtime = ctx.request_context.lifespan_context
    asked = _asked(ctx.request_state, runtime.clock.now())
    answer = (ctx.input_responses or {}).get(ANSWER_KEY)
    # An answer counts only with the state we minted when we asked this very question; the SDK verified its seal.
    if asked is not None and asked[0] == digest and isinstance(answer, ElicitResult):
        if answer.action != "accept":
            raise Declined(_not_agreed(answer.action, setting))
        # Only a JSON `true` is a yes, as in the pushed form: no content, no value, "yes", "true" or 1 are not.
        if not (isinstance(answer.content, dict) and answer.content.get("confirm") is True):
            raise Declined(_not_agreed("unticked", setting))
        if await _spend_answer(runtime, asked[1], until=asked[2]):
            return
        # The same sealed answer sent a second time: it agreed to one call, not two. Ask again.
    if before is not None:
        await before()
    nonce = secrets.token_urlsafe(16)
    form = render_elicitation_schema(Confirmation)
    raise AskClient(
        InputRequiredResult(
            input_requests={
                ANSWER_KEY: ElicitRequest(params=ElicitRequestFormParams(message=question, requested_schema=form))
            },
            request_state=json.dumps({"q": digest, "n": nonce, "e": runtime.clock.now() + ANSWER_TTL_S}),
        )
    )


def _asked(state: str | None, now: float) -> tuple[str, str, float] | None:
    """(question digest, nonce, deadline) of the question we asked last round, from the (already verified) request
    state; None when there is none, or its deadline passed (a deadline further than `ANSWER_TTL_S` is not ours)."""
    if state is None:
        return None
    try:
        doc = json.loads(state)
    except ValueError:
        return None
    if not (isinstance(doc, dict) and isinstance(doc.get("q"), str) and isinstance(doc.get("n"), str)):
        return None
    deadline = doc.get("e")
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not 0 < deadline - now <= ANSWER_TTL_S:
        return None
    return doc["q"], doc["n"], float(deadline)


async def _spend_answer(runtime: Runtime, nonce: str, *, until: float) -> bool:
    """Mark an answer used until its question's deadline, across every process sharing the store; False when it
    was used already (the mark is sealed: a store writer cannot plant one, only delete it).

    Raises:
        NotConfirmed: the shared store is down, so the answer could be marked used only in this process, where
            another replica (or this one, once the store is back) would not see it: it is not taken now.
    """

    def claim(doc: Doc | None) -> Change[bool]:
        if doc is not None:
            return Change(False, KEEP)
        return Change(True, {"used": True}, ttl_s=max(1.0, until - runtime.clock.now()))

    first = await runtime.store.update(consent_key(nonce), claim)
    if runtime.store.degraded:
        raise NotConfirmed(
            "The user's answer cannot be recorded as used while the shared state store is unreachable, so it "
            "was not taken; nothing was done and nothing was sent.",
            hint="Call again in a little while; the user will be asked again.",
        )
    return first


# Hosts that answer questions themselves: Codex CLI cancels or declines within milliseconds, whatever its user
# chose; the Claude Code VS Code extension is reported to. So a decline says what was answered, never who saw it.
_ANSWERS = {
    "decline": "was declined",
    "cancel": "was cancelled",
    "unticked": "was accepted without a yes ('Go ahead' unticked, or no value for it)",
    "not_boolean": "was answered with something other than a yes (only a ticked 'Go ahead', JSON true, is one)",
    "timeout": f"got no answer within {ANSWER_TIMEOUT_S:.0f} s",
}
_SWITCHES = (
    "Some clients answer such questions themselves without showing them to anyone. If the user saw no question, "
    "the server's operator can stop asking: FLASHSNAP_CONFIRM_DELETE=0 for deletions, a higher "
    "FLASHSNAP_CONFIRM_WORDS (or 0) for spending."
)


def _not_agreed(answer: str, setting: str) -> str:
    """What a declined result says: what the question got, that nothing happened, and the operator's switch."""
    got = _ANSWERS.get(answer, "was not agreed to")
    return f"The question {got}, so nothing was done and nothing was sent. {_SWITCHES} (This one: {setting}.)"
