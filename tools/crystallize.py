"""crystallize: turn a long text or a conversation into NeuralSnap snapshots."""

from typing import Annotated

from pydantic import Field

from server.neuralsnap.wire import Crystallized
from server.toolspec import CREATES, BrainId, MaxWait, ToolContext, ToolSpec, runtime


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
    max_wait_s: MaxWait = None,
) -> Crystallized:
    """Turn a long text or a conversation into snapshots in the user's NeuralSnap brain.

    It spends the plan's monthly crystallize tokens; each call is new: never repeat
    one that failed with maybe_processed true. Returns the snapshots made and tokens.
    """
    return await runtime(ctx).neuralsnap().crystallize(text, brain_id, source_type)


TOOL = ToolSpec(
    crystallize, "crystallize", "Crystallize text into snapshots", CREATES, "neuralsnap-write", changes=("resources",)
)
