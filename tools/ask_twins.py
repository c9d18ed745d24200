"""ask_twins: try a question or a text on up to 20 of neuroflash's digital twins at once."""

from typing import Annotated

from pydantic import BaseModel, Field

from server.errors import InvalidArguments
from server.neuroflash.wire import ChatMessage
from server.tooling import spending
from server.tooling.spec import CREATES, Cost, MaxWait, ToolContext, ToolSpec, WorkspaceId, runtime
from tools.generate import Message


class TwinReply(BaseModel):
    twin_id: str
    answer: str
    reason: str | None


class TwinAnswers(BaseModel):
    workspace_id: str
    summary: str | None = Field(description="What the group said, in short.")
    answers: list[TwinReply]


async def ask_twins(
    ctx: ToolContext,
    twin_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]],
        Field(min_length=1, max_length=20, description="Up to 20 twin ids from list_twins."),
    ],
    question: Annotated[
        str | None, Field(min_length=1, max_length=20_000, description="Give this or messages.")
    ] = None,
    messages: Annotated[
        list[Message] | None, Field(min_length=1, max_length=50, description="A conversation, instead.")
    ] = None,
    workspace_id: WorkspaceId = None,
    max_wait_s: MaxWait = None,
) -> TwinAnswers:
    """Ask digital twins (simulated audience members) a question, e.g. feedback on copy.

    Returns a summary and each twin's answer and reason. Each call is a new request
    that may spend quota: never repeat one that failed with maybe_processed true.

    Raises:
        InvalidArguments: neither or both of question and messages, or a twin id twice.
        BudgetExhausted: the caller's own words (team file) are spent, or its generations at once are running.
        FlashsnapError: what the neuroflash service raises (see NeuroflashService.ask_twins).
    """
    if (question is None) == (messages is None):
        raise InvalidArguments("Give exactly one of question or messages.")
    if len(set(twin_ids)) < len(twin_ids):
        raise InvalidArguments("Invalid arguments for ask_twins: twin_ids: each id once.")
    said = [ChatMessage(role="user", content=question)] if question is not None else []
    said += [ChatMessage(role=m.role, content=m.content) for m in messages or []]
    # neuroflash reports no words for a twin chat: it holds one word and a generation of the caller's budgets
    # while it runs, so a principal whose words are spent, or who runs its generations at once, is refused.
    async with spending.held(ctx, TOOL.cost, 1) as spend:
        workspace_id, answer = await runtime(ctx).neuroflash().ask_twins(workspace_id, twin_ids, said)
        spend.settle(0)
    replies = [TwinReply(twin_id=k, answer=v.answer, reason=v.reason) for k, v in answer.twin_responses.items()]
    return TwinAnswers(workspace_id=workspace_id, summary=answer.summary, answers=replies)


TOOL = ToolSpec(
    ask_twins,
    title="Ask neuroflash digital twins",
    toolset="twins",
    annotations=CREATES,
    cost=Cost.WORDS,
    purpose="ask twins (a simulated audience) for feedback on copy (may spend quota).",
    quotes="digital twins' answers",
)
