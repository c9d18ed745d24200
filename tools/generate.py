"""generate: write text with a neuroflash model, streamed, relaying progress as it arrives."""

import math
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from server.errors import InvalidArguments
from server.neuroflash.wire import ChatMessage, ChatRequest
from server.segments import ID_PATTERN, MAX_ID
from server.tooling import consent, spending
from server.tooling.arguments import Closed
from server.tooling.consent import WORDS_PER_TOKEN, ask_first, fitted_max_tokens, generate_words, over
from server.tooling.spec import CREATES, Confirm, Cost, MaxWait, ToolContext, ToolSpec, WorkspaceId, runtime


class Message(Closed):
    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(min_length=1, max_length=200_000, description="What is said.")


class Generation(BaseModel):
    text: str = Field(description="The generated text.")
    model: str = Field(description="The model that wrote it, as provider/model.")
    finish_reason: str = Field(description="'stop' when the model finished; 'length' when max_tokens cut it.")
    max_tokens: int = Field(description="The bound sent: the max_tokens given, else the server's default.")
    words_used: int = Field(description="Words charged to the workspace's quota for this generation.")
    request_id: str | None = Field(description="neuroflash's x-request-id, for support.")
    workspace_id: str
    note: str | None = Field(default=None, description="How to get more, when max_tokens cut the text.")


async def generate(
    ctx: ToolContext,
    model: Annotated[
        str,
        Field(min_length=1, max_length=100, description="Model id from list_models, e.g. 'gpt-4.1-mini'."),
    ],
    prompt: Annotated[
        str | None,
        Field(min_length=1, max_length=200_000, description="What to write. Give this or messages, not both."),
    ] = None,
    messages: Annotated[
        list[Message] | None,
        Field(min_length=1, max_length=200, description="A conversation to continue, instead of prompt."),
    ] = None,
    system: Annotated[
        str | None, Field(min_length=1, max_length=50_000, description="Instructions that steer the model.")
    ] = None,
    workspace_id: WorkspaceId = None,
    max_tokens: Annotated[int | None, Field(ge=1, le=64_000, description="Upper bound on the answer's length.")] = None,
    temperature: Annotated[
        float | None, Field(ge=0, le=2, description="0 is focused and repeatable, 2 is most varied.")
    ] = None,
    reasoning_effort: Annotated[
        Literal["max", "xhigh", "high", "medium", "low", "minimal", "none"] | None,
        Field(description="How hard a reasoning model thinks (see reasoning_model in list_models)."),
    ] = None,
    brand_voice_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_ID,
            pattern=ID_PATTERN,
            description="Write in this brand voice (id from list_brand_voices).",
        ),
    ] = None,
    confirm: Confirm = None,
    max_wait_s: MaxWait = None,
) -> Generation:
    """Generate text with a neuroflash language model; this spends words from the workspace's quota.

    Give either prompt or messages. The text streams from neuroflash and progress is
    reported as it arrives. Each call is a new, billed generation: do not repeat a
    call that failed with maybe_processed true without checking first. When the quota
    is spent, the call is refused before anything is sent, with the reset time. Without
    max_tokens the server sends its own bound, fitted to what it spends unasked; a text
    cut there has finish_reason 'length' and a note. A max_tokens larger than the server
    spends unasked (its instructions say how much) asks the user first; a client that
    cannot ask gets confirmation_required: ask the user, and call again with confirm
    true only if they agreed.

    Raises:
        InvalidArguments: neither or both of prompt and messages.
        BudgetExhausted: the caller's own budget (team file) or share of scarce words cannot pay for it.
        NotConfirmed: the user did not agree to a large generation, or was not asked yet (nothing sent).
        FlashsnapError: what the neuroflash service raises (see NeuroflashService.generate).
    """
    if (prompt is None) == (messages is None):
        raise InvalidArguments("Give exactly one of prompt or messages.")
    conversation = [ChatMessage(role="user", content=prompt)] if prompt is not None else []
    conversation += [ChatMessage(role=m.role, content=m.content) for m in messages or []]
    if system is not None:
        conversation.insert(0, ChatMessage(role="system", content=system))
    body = ChatRequest(messages=conversation, model=model, temperature=temperature, reasoning_effort=reasoning_effort)
    shared = runtime(ctx)
    neuroflash = shared.neuroflash()
    # Everything that costs nothing first (workspace, model, quota, voice): a refusal is never asked about.
    planned = await neuroflash.plan_generation(workspace_id, body, brand_voice_id)
    threshold = consent.confirm_words(shared.settings)
    default = shared.settings.default_max_tokens
    asked_for = planned.input_words  # counted once: a request may hold 200,000 characters
    bound = max_tokens if max_tokens is not None else fitted_max_tokens(default, threshold, asked_for)
    words = generate_words(asked_for, bound)
    # The caller's own budgets and share of scarce words cost nothing to check either: before any question.
    await spending.check(ctx, TOOL.cost, math.ceil(words), workspace_id=planned.workspace_id)
    if over(words, threshold):
        await ask_first(
            ctx,
            f"Write text with the model {model!r} in neuroflash? This may use up to about {words:,.0f} words of "
            f"the workspace's word allowance: {asked_for:,} for the request and up to "
            f"{bound * WORDS_PER_TOKEN:,.0f} for the answer.",
            confirm=confirm,
            setting="FLASHSNAP_CONFIRM_WORDS",
        )
    async with spending.held(ctx, TOOL.cost, math.ceil(words), workspace_id=planned.workspace_id) as spend:
        result = await neuroflash.generate(planned.bounded(bound))
        spend.settle(result.words_used)
    cut = result.finish_reason == "length"
    note = _cut_note(bound, given=max_tokens is not None, threshold=threshold) if cut else None
    return Generation(workspace_id=planned.workspace_id, max_tokens=bound, note=note, **result.model_dump())


def _cut_note(bound: int, *, given: bool, threshold: int) -> str:
    """What a text cut at its bound says: which bound cut it, and how to get more."""
    which = "the max_tokens given" if given else "the server's default bound, as no max_tokens was given"
    more = "call again with a larger max_tokens"
    if threshold > 0:
        more += f" (one that could spend more than {threshold:,} words asks the user first)"
    return f"The text was cut at {bound:,} tokens ({which}). For more, {more}."


TOOL = ToolSpec(
    generate,
    title="Generate text with neuroflash",
    toolset="neuroflash",
    annotations=CREATES,
    cost=Cost.WORDS,
    purpose="write text with a neuroflash model (spends words from the workspace's quota).",
    quotes="a model's text",
)
