"""update_snapshot: correct fields of a saved NeuralSnap snapshot, keeping the rest."""

from typing import Annotated, Literal

from pydantic import Field

from server.errors import InvalidArguments
from server.neuralsnap.wire import Snapshot, SnapshotChanges
from server.tooling.spec import OVERWRITES, Cost, MaxWait, SnapshotId, ToolContext, ToolSpec, runtime
from tools.snapshot import Feeling, feelings_of

Text = Annotated[str | None, Field(min_length=1, max_length=20_000)]
Score = Annotated[float | None, Field(ge=0, le=1)]


async def update_snapshot(
    ctx: ToolContext,
    id: SnapshotId,
    name: Annotated[str | None, Field(min_length=1, max_length=200, description="New title.")] = None,
    core: Annotated[Text, Field(description="New thought.")] = None,
    type: Annotated[
        Literal["Belief", "Model", "Rule", "Conviction", "Principle"] | None, Field(description="New kind.")
    ] = None,
    one_liner: Annotated[Text, Field(description="In one line.")] = None,
    story: Annotated[Text, Field(description="The story behind it.")] = None,
    moment: Annotated[Text, Field(description="When it formed.")] = None,
    source: Annotated[Text, Field(description="Where it comes from.")] = None,
    trigger_pattern: Annotated[Text, Field(description="When it applies.")] = None,
    method: Annotated[Text, Field(description="How to apply it.")] = None,
    steps: Annotated[Text, Field(description="Steps, as text.")] = None,
    filter: Annotated[Text, Field(description="What it rules out.")] = None,
    challenge: Annotated[Text, Field(description="Strongest objection.")] = None,
    break_test: Annotated[Text, Field(description="What would disprove it.")] = None,
    risks: Annotated[Text, Field(description="What can go wrong.")] = None,
    proof: Annotated[Text, Field(description="Evidence.")] = None,
    confidence: Annotated[Score, Field(description="How sure, 0 to 1.")] = None,
    significance_score: Annotated[Score, Field(description="How much it matters, 0 to 1.")] = None,
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=50)]] | None,
        Field(max_length=30, description="Replaces all tags."),
    ] = None,
    emotion: Annotated[list[Feeling] | None, Field(max_length=20, description="Replaces the feelings.")] = None,
    max_wait_s: MaxWait = None,
) -> Snapshot:
    """Change fields of a saved snapshot; every field left out keeps its value.

    Fields are those of snapshot. Returns the snapshot as it now is.

    Raises:
        InvalidArguments: no field to change, or two feelings with one name.
        FlashsnapError: what the NeuralSnap service raises (see NeuralSnapService.update).
    """
    feelings = feelings_of("update_snapshot", emotion)
    changes = SnapshotChanges(
        name=name,
        core=core,
        type=type,
        one_liner=one_liner,
        story=story,
        moment=moment,
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
        emotion=feelings,
    )
    if not changes.body():
        raise InvalidArguments("Invalid arguments for update_snapshot: give at least one field to change.")
    return await runtime(ctx).neuralsnap().update(id, changes)


TOOL = ToolSpec(
    update_snapshot,
    title="Update a NeuralSnap snapshot",
    toolset="neuralsnap-write",
    annotations=OVERWRITES,
    cost=Cost.WRITES,
    purpose="change fields of a saved thought.",
    changes=("resources",),
    quotes="the snapshot as saved",
)
