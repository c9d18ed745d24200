"""snapshot: save a structured thought to the user's NeuralSnap brain."""

from typing import Annotated, Any, Literal

from pydantic import Field

from server.errors import InvalidArguments
from server.neuralsnap.wire import SavedSnapshot, SnapshotFields
from server.tooling.arguments import Closed
from server.tooling.spec import CREATES, BrainId, Cost, MaxWait, ToolContext, ToolSpec, runtime

Text = Annotated[str | None, Field(min_length=1, max_length=20_000)]


class Feeling(Closed):
    """A feeling (sent to NeuralSnap in its `emotion` object)."""

    name: str = Field(min_length=1, max_length=50, description="The feeling, e.g. 'joy' or 'doubt'.")
    value: Annotated[str, Field(max_length=200)] | float | bool = Field(
        description="How it is felt: an intensity from 0 to 1, a word, or true."
    )


def feelings_of(tool: str, emotion: list[Feeling] | None) -> dict[str, Any] | None:
    """The feelings as NeuralSnap's `emotion` object (None when none were given).

    Raises:
        InvalidArguments: two feelings with one name.
    """
    if emotion is None:
        return None
    feelings = {f.name: f.value for f in emotion}
    if len(feelings) < len(emotion):
        raise InvalidArguments(f"Invalid arguments for {tool}: emotion: each feeling's name must be unique.")
    return feelings


async def snapshot(
    ctx: ToolContext,
    name: Annotated[str, Field(min_length=1, max_length=200, description="A short title for the thought.")],
    core: Annotated[
        str,
        Field(min_length=1, max_length=20_000, description="The thought itself, in one or a few sentences."),
    ],
    type: Annotated[
        Literal["Belief", "Model", "Rule", "Conviction", "Principle"],
        Field(description="What kind of thought it is."),
    ] = "Belief",
    one_liner: Annotated[Text, Field(description="The thought in one line.")] = None,
    story: Annotated[Text, Field(description="The story behind it.")] = None,
    moment: Annotated[Text, Field(description="The moment it was formed.")] = None,
    emotion: Annotated[
        list[Feeling] | None,
        Field(max_length=20, description="Feelings attached to it, each a name and how it is felt."),
    ] = None,
    source: Annotated[Text, Field(description="Where it comes from: a book, a person, a URL.")] = None,
    trigger_pattern: Annotated[Text, Field(description="When it applies.")] = None,
    method: Annotated[Text, Field(description="How to apply it.")] = None,
    steps: Annotated[Text, Field(description="Steps to follow, as text.")] = None,
    filter: Annotated[Text, Field(description="What it rules out.")] = None,
    challenge: Annotated[Text, Field(description="The strongest objection.")] = None,
    break_test: Annotated[Text, Field(description="What would prove it wrong.")] = None,
    risks: Annotated[Text, Field(description="What can go wrong when following it.")] = None,
    proof: Annotated[Text, Field(description="Evidence for it.")] = None,
    confidence: Annotated[float, Field(ge=0, le=1, description="How sure the user is, 0 to 1.")] = 0.5,
    significance_score: Annotated[float, Field(ge=0, le=1, description="How much it matters, 0 to 1.")] = 0.5,
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=50)]],
        Field(max_length=30, description="Labels to find it by."),
    ] = [],  # noqa: B006 - pydantic copies defaults; a list reads best in the schema
    brain_id: BrainId = None,
    max_wait_s: MaxWait = None,
) -> SavedSnapshot:
    """Save a structured thought (a "snapshot") to the user's NeuralSnap second brain.

    Use it when the user wants to keep an idea, belief, rule or lesson; add whatever
    else the user said. Each call creates a new snapshot: after a failure with
    maybe_processed true, check with search_snapshots before saving again. Returns
    the stored snapshot with its id; a `note` means NeuralSnap's answer could not be
    read in full (it was saved all the same: do not save it again).

    Raises:
        InvalidArguments: two feelings with one name.
        FlashsnapError: what the NeuralSnap service raises (see NeuralSnapService.save).
    """
    feelings = feelings_of("snapshot", emotion)
    fields = SnapshotFields(
        name=name,
        core=core,
        type=type,
        one_liner=one_liner,
        story=story,
        moment=moment,
        emotion=feelings,
        source=source,
        trigger_pattern=trigger_pattern,
        method=method,
        steps=steps,
        filter=filter,
        challenge=challenge,
        break_test=break_test,
        risks=risks,
        proof=proof,
        confidence=confidence,
        significance_score=significance_score,
        tags=tags,
    )
    return await runtime(ctx).neuralsnap().save(fields, brain_id)


TOOL = ToolSpec(
    snapshot,
    title="Save a NeuralSnap snapshot",
    toolset="neuralsnap",
    annotations=CREATES,
    cost=Cost.WRITES,
    purpose="save one structured thought to the user's NeuralSnap second brain.",
    changes=("resources",),
    quotes="the snapshot as saved",
)
