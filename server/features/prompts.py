"""What the model reads besides the tools: the server's instructions, built from the tools that are on.

Every sentence here that names a tool is kept only when that tool is on, so a model is never told about a
tool it cannot call (`--read-only`, `--tools`, `--toolsets`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Annotated, Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.types import CompleteRequestParams, Completion, PromptReference
from pydantic import Field

from server.errors import FlashsnapError
from server.features import resources
from server.tooling import consent
from server.tooling.selection import Selection, narrowed_by
from server.tooling.spec import ToolSpec

log = logging.getLogger(__name__)

SANDBOX_NOTE = """
SANDBOX MODE: this server talks to a local emulator with demo data, not the real services.
Nothing generated or saved here is real, and no real quota is spent."""


def _names(names: Collection[str]) -> str:
    listed = list(names)
    return listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " or " + listed[-1]


def _quota_lines(enabled: Collection[str]) -> list[str]:
    lines = []
    if "generate" in enabled:
        quota = "Quotas: generate spends words from the workspace's daily and monthly quota"
        quota += "; check_quota says what is left and when it resets." if "check_quota" in enabled else "."
        lines.append(quota + " A generation the quota cannot cover is refused before anything is sent.")
    elif "check_quota" in enabled:
        lines.append("Quotas: check_quota says what is left of a workspace's words and when they reset.")
    if "generate" in enabled and "list_brand_voices" in enabled:
        lines.append("A brand_voice_id from list_brand_voices makes generate write in that brand voice.")
    if "crystallize" in enabled:
        lines.append("crystallize spends the NeuralSnap plan's monthly crystallize tokens.")
    return lines


def _safety_lines(specs: Sequence[ToolSpec], enabled: Collection[str]) -> list[str]:
    lines = [
        "Waits: a call waits up to max_wait_s (default 30 s) for a rate limit or a free slot; when it cannot, "
        "it fails with rate_limited and retry_after_s says when to try again.",
        "Failed calls say what happened and what to do. maybe_processed true means the request may have reached "
        "the service and been carried out even though no answer came back.",
    ]
    if spending := [spec.name for spec in specs if spec.never_repeat and spec.name in enabled]:
        check = " (search_snapshots shows whether a thought was saved)" if "search_snapshots" in enabled else ""
        lines.append(
            f"Never repeat a call that creates or spends ({_names(spending)}): after a failure with "
            f"maybe_processed true, check first whether it happened{check}; never retry it blindly."
        )
    return lines


def _asking_lines(enabled: Collection[str], confirm_words: int, confirm_delete: bool) -> list[str]:
    """When the user is asked first (server/tooling/consent.py), so a model can stay below it on purpose."""
    lines = []
    if confirm_delete and "delete_snapshot" in enabled:
        lines.append("delete_snapshot asks the user first (an id that does not exist is refused unasked).")
    if "generate" in enabled:
        lines.append(
            "generate without max_tokens sends the server's own bound, fitted to what it spends unasked: never a "
            "question; a text cut there says so (finish_reason length, with a note)."
        )
    if confirm_words > 0 and "generate" in enabled:
        lines.append(
            f"A generation whose prompt and max_tokens (about 0.75 words a token) could spend more than "
            f"{confirm_words:,} words asks the user first: give a larger max_tokens only when the job needs it."
        )
    if confirm_words > 0 and "crystallize" in enabled:
        chars = consent.crystallize_chars_unasked(confirm_words)
        lines.append(f"Crystallizing more than about {chars:,} characters asks the user first.")
    if confirm_words > 0 or (confirm_delete and "delete_snapshot" in enabled):
        lines.append(
            "Nothing is asked that would be refused anyway. A client that cannot ask gets confirmation_required: "
            "ask the user, and call again with confirm true only if they agreed. A declined question sent "
            "nothing: do not call again unless the user asks."
        )
    return lines


def instructions(
    specs: Sequence[ToolSpec],
    enabled: Collection[str],
    *,
    sandbox: bool = False,
    confirm_words: int = 0,
    confirm_delete: bool = True,
) -> str:
    """The server's instructions for the tools in `enabled`: what each is for (its declared purpose, in the order
    of `specs`), quotas and waits, what `maybe_processed` means, never repeating a call whose declared cost a
    repeat adds again, and when the user is asked first. No tool outside `enabled` is named."""
    lines = ["flashsnap-mcp connects you to neuroflash (AI writing) and NeuralSnap (the user's second brain)."]
    lines.append("Tools on in this server:")
    lines += [f"- {spec.purpose_line}" for spec in specs if spec.name in enabled]
    lines += _quota_lines(enabled)
    lines += _safety_lines(specs, enabled)
    lines += _asking_lines(enabled, confirm_words, confirm_delete)
    return "\n".join(lines) + (SANDBOX_NOTE if sandbox else "")


# --- Prompts: slash commands in Claude Code, Cursor and VS Code. Each is offered only when the tools it asks
# the model to call are on, and its text names only tools that are on (for this request, over HTTP).

PROMPT_NEEDS: dict[str, tuple[str, ...]] = {
    "write_in_brand_voice": ("generate", "list_brand_voices"),
    "crystallize_conversation": ("crystallize",),
    "test_copy_on_twins": ("list_twins", "ask_twins"),
    "check_quota_before_job": ("check_quota",),
}

Brief = Annotated[str, Field(description="What to write: the topic, audience, length and format.")]
VoiceArg = Annotated[
    str | None, Field(description="The brand voice's id (completed from the workspace's brand voices).")
]
WorkspaceArg = Annotated[
    str | None, Field(description="The neuroflash workspace id (completed); leave it out for the default.")
]
FocusArg = Annotated[str | None, Field(description="What to keep from the conversation, e.g. 'the decisions'.")]
BrainArg = Annotated[str | None, Field(description="Which brain (a UUID); leave it out for the default brain.")]
CopyArg = Annotated[str, Field(description="The copy to test: a headline, an ad, an email, a landing page.")]
QuestionArg = Annotated[str | None, Field(description="What to ask the audience (default: what they think).")]
GroupArg = Annotated[str | None, Field(description="The twin group (audience) to ask, if the user named one.")]
JobArg = Annotated[str, Field(description="The job coming up, e.g. '40 product descriptions of 150 words'.")]
WordsArg = Annotated[str | None, Field(description="About how many words the job will write, if known.")]


def _where(workspace_id: str | None) -> str:
    return f' with workspace_id "{workspace_id}"' if workspace_id else ""


def _no_repeat(tool: str, check: str = "") -> str:
    text = f"Call {tool} once: if it fails with maybe_processed true, do not call it again"
    return text + (f"; {check}" if check else "") + ", and tell me what happened."


def brand_voice_text(on: Collection[str], brief: str, brand_voice_id: str | None, workspace_id: str | None) -> str:
    """The brand-voice prompt, naming only the tools in `on`."""
    steps = []
    if brand_voice_id:
        steps.append(f'Use the brand voice with id "{brand_voice_id}".')
    else:
        steps.append(f"Call list_brand_voices{_where(workspace_id)} and pick the voice that fits, or ask me.")
    if "check_quota" in on:
        steps.append("For a long text, call check_quota first to see that enough words are left.")
    model = "a model id from list_models" if "list_models" in on else "the model id I name"
    steps.append(
        f"Call generate{_where(workspace_id)}: that brand_voice_id, {model}, the brief as prompt, and max_tokens "
        "for the length the brief asks (about 4 tokens for 3 words), so no more is spent than the text needs."
    )
    steps.append(_no_repeat("generate"))
    return f"Write this in my brand voice:\n\n{brief}\n\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def crystallize_text(on: Collection[str], focus: str | None, brain_id: str | None) -> str:
    """The crystallize prompt, naming only the tools in `on`."""
    keep = f", keeping above all {focus}" if focus else ""
    brain = f' and brain_id "{brain_id}"' if brain_id else ""
    check = "check with search_snapshots whether its snapshots exist" if "search_snapshots" in on else ""
    return (
        "Capture this conversation into my NeuralSnap second brain.\n\n"
        f"1. Write out the conversation so far as plain text: who said what, the ideas and decisions{keep}.\n"
        f'2. Call crystallize with that text, source_type "conversation"{brain}. It spends crystallize tokens. '
        f"{_no_repeat('crystallize', check)}\n"
        "3. Tell me which snapshots were made, by name."
    )


def twins_text(
    on: Collection[str], copy: str, question: str | None, group: str | None, workspace_id: str | None
) -> str:
    """The twins prompt, naming only the tools in `on`."""
    audience = f'the group "{group}"' if group else "the group that fits this copy best (ask me if unsure)"
    ask = question or "What do you think of this copy? Would it make you act, and what would you change?"
    return (
        f"Test this copy on an audience of digital twins:\n\n{copy}\n\n"
        f"1. Call list_twins{_where(workspace_id)} to find {audience}, then again with that group for its twins.\n"
        f"2. Call ask_twins{_where(workspace_id)} with those twin_ids and the question: {ask} "
        f"{_no_repeat('ask_twins')}\n"
        "3. Summarize what the audience liked, what it did not, and what to change."
    )


def quota_text(on: Collection[str], job: str, words: str | None, workspace_id: str | None) -> str:
    """The quota prompt, naming only the tools in `on`."""
    need = f"about {words} words" if words else "an estimate of its words"
    start = " Only then start generate." if "generate" in on else ""
    return (
        f"Before a big job ({job}), check what is left of the quota.\n\n"
        f"1. Call check_quota{_where(workspace_id)}.\n"
        f"2. Compare the words left today and this month with what the job needs ({need}).\n"
        "3. If it does not fit, tell me when the quota resets and how much of the job fits now, and wait for me."
        f"{start}"
    )


def enabled_for(request: object, selection: Selection) -> set[str]:
    """The tools on for this request: the operator's, narrowed by the HTTP request's X-MCP-* headers."""
    return set(selection.enabled) - set(narrowed_by(getattr(request, "headers", None), selection))


def enabled_now(ctx: Context[Any, Any], selection: Selection) -> set[str]:
    """`enabled_for` the request a prompt is rendered for."""
    return enabled_for(ctx.request_context.request, selection)


def offered(needs: Mapping[str, tuple[str, ...]], on: Collection[str]) -> set[str]:
    """The names (prompts, resources) whose tools are all in `on`."""
    return {name for name, tools in needs.items() if all(tool in on for tool in tools)}


# --- Completions of arguments whose values come from the service (`server/features/resources.py`, cached briefly), each
# read through the tool that lists them (no completion when it is off). A value typed matches an id's start or a
# name.

MAX_VALUES = 100  # the protocol's cap on one completion


async def complete_argument(
    ctx: ServerRequestContext[Any, Any], selection: Selection, params: CompleteRequestParams
) -> Completion:
    """The values of an argument that start with (or whose names contain) what the user typed so far.

    A failure upstream completes nothing: clients ask on every keystroke, and the tools report failures.
    """
    source = resources.ARGUMENT_SOURCES.get(params.argument.name)
    if source is None or source[0] not in enabled_for(ctx.request, selection):
        return Completion(values=[])
    typed = params.argument.value.lower()
    try:
        values = await source[1](ctx.lifespan_context, (params.context.arguments or {}) if params.context else {})
    except FlashsnapError as exc:
        log.info("no completion for %s: %s", params.argument.name, exc.code)
        return Completion(values=[])
    matched = [value for value, label in values if value.lower().startswith(typed) or typed in label.lower()]
    return Completion(values=matched[:MAX_VALUES], total=len(matched), has_more=len(matched) > MAX_VALUES)


async def complete(
    ctx: ServerRequestContext[Any, Any], selection: Selection, params: CompleteRequestParams
) -> Completion:
    """A completion for a prompt's or a resource template's argument; nothing for one that is off."""
    on = enabled_for(ctx.request, selection)
    if isinstance(params.ref, PromptReference):
        offered_now = params.ref.name in offered(PROMPT_NEEDS, on)
    else:
        needs = resources.TEMPLATE_NEEDS.get(params.ref.uri)
        offered_now = needs is not None and all(tool in on for tool in needs)
    if not offered_now:
        return Completion(values=[])
    return await complete_argument(ctx, selection, params)


def register(app: MCPServer[Any], selection: Selection) -> None:
    """Add the prompts whose tools the operator turned on."""
    on = offered(PROMPT_NEEDS, selection.enabled)

    async def write_in_brand_voice(
        ctx: Context[Any, Any], brief: Brief, brand_voice_id: VoiceArg = None, workspace_id: WorkspaceArg = None
    ) -> str:
        return brand_voice_text(enabled_now(ctx, selection), brief, brand_voice_id, workspace_id)

    async def crystallize_conversation(
        ctx: Context[Any, Any], focus: FocusArg = None, brain_id: BrainArg = None
    ) -> str:
        return crystallize_text(enabled_now(ctx, selection), focus, brain_id)

    async def test_copy_on_twins(
        ctx: Context[Any, Any],
        copy: CopyArg,
        question: QuestionArg = None,
        group: GroupArg = None,
        workspace_id: WorkspaceArg = None,
    ) -> str:
        return twins_text(enabled_now(ctx, selection), copy, question, group, workspace_id)

    async def check_quota_before_job(
        ctx: Context[Any, Any], job: JobArg, words: WordsArg = None, workspace_id: WorkspaceArg = None
    ) -> str:
        return quota_text(enabled_now(ctx, selection), job, words, workspace_id)

    listed: list[tuple[Callable[..., Awaitable[str]], str, str]] = [
        (write_in_brand_voice, "Write in a brand voice", "Write a text in one of the workspace's brand voices."),
        (crystallize_conversation, "Capture this conversation", "Crystallize this conversation into the brain."),
        (test_copy_on_twins, "Test copy on twins", "Ask an audience of digital twins what they think of copy."),
        (check_quota_before_job, "Check the quota first", "See what is left of the quota before a big job."),
    ]
    for fn, title, description in listed:
        name = getattr(fn, "__name__", "")
        if name in on:
            app.add_prompt(Prompt.from_function(fn, name=name, title=title, description=description))
