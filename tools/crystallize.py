"""crystallize: turn a long text or a conversation into NeuralSnap snapshots."""

from typing import Annotated

from pydantic import Field

from server.neuralsnap.wire import Crystallized
from server.tooling import consent, spending
from server.tooling.consent import WORDS_PER_TOKEN, ask_first, crystallize_tokens, over
from server.tooling.spec import CREATES, BrainId, Confirm, Cost, MaxWait, ToolContext, ToolSpec, runtime


async def crystallize(
    ctx: ToolContext,
    text: Annotated[
        str, Field(min_length=50, max_length=100_000, description="The text or conversation, 50 to 100,000 chars.")
    ],
    brain_id: BrainId = None,
    source_type: Annotated[
        str | None,
        Field(min_length=1, max_length=50, description="Where the text comes from, e.g. 'conversation'."),
    ] = None,
    confirm: Confirm = None,
    max_wait_s: MaxWait = None,
) -> Crystallized:
    """Turn a long text or a conversation into snapshots in the user's NeuralSnap brain.

    It spends the plan's monthly crystallize tokens (one per 4 characters read, more for
    the snapshots written back); each call is new: never repeat one that failed with
    maybe_processed true. A long text asks the user first; a client that cannot ask gets
    confirmation_required instead: ask the user, and call again with confirm true only if
    they agreed. Returns the snapshots and tokens.

    Raises:
        BudgetExhausted: the caller's own crystallize-token budget (team file) cannot pay for it.
        NotConfirmed: the text is long and the user did not agree, or was not asked yet (nothing sent).
        FlashsnapError: what the NeuralSnap service raises.
    """
    threshold = consent.confirm_words(runtime(ctx).settings)
    tokens = crystallize_tokens(text)
    await spending.check(ctx, TOOL.cost, tokens)  # the caller's own budget, before any question
    if over(tokens * WORDS_PER_TOKEN, threshold):
        await ask_first(
            ctx,
            f"Turn a text of {len(text):,} characters into snapshots in your NeuralSnap brain? This may use up to "
            f"{tokens:,} of the plan's monthly crystallize tokens: the text is read, and the snapshots are written "
            "back.",
            confirm=confirm,
            setting="FLASHSNAP_CONFIRM_WORDS",
        )
    async with spending.held(ctx, TOOL.cost, tokens) as spend:
        made = await runtime(ctx).neuralsnap().crystallize(text, brain_id, source_type)
        spend.settle(made.tokens if made.tokens is not None else tokens)
    return made


TOOL = ToolSpec(
    crystallize,
    title="Crystallize text into snapshots",
    toolset="neuralsnap-write",
    annotations=CREATES,
    cost=Cost.CRYSTALLIZE,
    purpose="turn a long text or a conversation into snapshots (spends crystallize tokens).",
    changes=("resources",),
    quotes="the snapshots NeuralSnap wrote",
)
