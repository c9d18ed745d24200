"""The neuroflash service the tools call: workspaces, the model catalog, the quota book, generation slots, generate.

Each method is one thing a tool asks for. `generate` owns the whole sequence of a generation:
resolve the workspace, admit the model and the quota (refusing before anything is sent), hold
one of the workspace's generation slots, stream, and count the words spent for every process.
"""

from __future__ import annotations

from dataclasses import dataclass

from server import context
from server.clock import Clock
from server.credentials.tokens import TokenManager
from server.errors import AccessDenied, FairUseReached, FlashsnapError, QuotaExhausted, RateLimited, RouteMissing
from server.neuroflash.catalog import ModelCatalog
from server.neuroflash.client import NeuroflashClient
from server.neuroflash.quota import QuotaBook
from server.neuroflash.voices import VoiceBook
from server.neuroflash.wire import (
    BrandVoice,
    ChatMessage,
    ChatRequest,
    ChatResult,
    Model,
    Quota,
    Twin,
    TwinGroup,
    TwinGroupAnswer,
    Workspace,
)
from server.neuroflash.workspaces import WorkspaceResolver
from server.observe.metrics import Observer
from server.scheduler.gate import Gate
from server.scheduler.slots import Slots
from server.state.layout import AccountKeys

GENERATION_SLOTS = "neuroflash generations"  # the scope a generation waiting for a free stream reports


@dataclass
class NeuroflashService:
    """neuroflash as the tools see it: one per account and process, opened by `server/neuroflash/opening.py`."""

    client: NeuroflashClient
    tokens: TokenManager
    workspaces: WorkspaceResolver
    quotas: QuotaBook
    generation_slots: Slots  # at most FLASHSNAP_MAX_CONCURRENT_GENERATIONS streams per workspace, all processes
    models: ModelCatalog  # an unknown or unavailable model is refused before anything is sent
    clock: Clock
    metrics: Observer
    voices: VoiceBook
    account: AccountKeys  # which credential this is: its documents in the store
    gate: Gate  # its rate limit, as every request waits for it

    async def list_brand_voices(self, workspace_id: str | None) -> tuple[str, list[BrandVoice]]:
        """The workspace meant and its brand voices.

        Raises:
            InvalidArguments: no workspace was named and the account has no default.
            FlashsnapError: the list could not be read (its subclass says why).
        """
        workspace_id = await self.workspaces.resolve(workspace_id)
        return workspace_id, await self.client.brand_voices(workspace_id)

    async def list_twins(self, workspace_id: str | None, group: str | None) -> tuple[list[TwinGroup], list[Twin]]:
        """Without `group`, the static groups (one request, no workspace needed); with one, its twins.

        Raises:
            InvalidArguments: a group was named, no workspace was, and the account has no default.
            FlashsnapError: the list could not be read (its subclass says why).
        """
        if group is None:
            return await self.client.twin_groups(), []
        workspace_id = await self.workspaces.resolve(workspace_id)
        return [], await self.client.group_twins(workspace_id, group)

    async def ask_twins(
        self, workspace_id: str | None, twin_ids: list[str], messages: list[ChatMessage]
    ) -> tuple[str, TwinGroupAnswer]:
        """One group chat with the twins; sent once and never repeated, as it may spend the workspace's quota.

        Raises:
            InvalidArguments: no workspace was named and the account has no default.
            FlashsnapError: the chat failed; `maybe_processed` says whether it may have run.
        """
        workspace_id = await self.workspaces.resolve(workspace_id)
        body = {"twinIds": twin_ids, "messages": [m.model_dump() for m in messages]}
        return workspace_id, await self.client.ask_twins(workspace_id, body)

    async def list_workspaces(self) -> tuple[list[Workspace], str | None]:
        """The account's workspaces and the id of the default one (None when a tool must be told).

        Raises:
            FlashsnapError: the workspace list could not be read (its subclass says why).
        """
        workspaces = await self.client.workspaces()
        return workspaces, self.workspaces.default(workspaces)

    async def list_models(self, workspace_id: str | None) -> tuple[str, list[Model]]:
        """The workspace meant (the default when None) and every model of the catalog, available or not.

        Always asks the upstream, so a model-list route that came back is seen (and remembered) at once.

        Raises:
            InvalidArguments: no workspace was named and the account has no default.
            RouteMissing: this API has no model-list route; the message names the path tried, the hint
                says generate works without it.
            FlashsnapError: the model list could not be read (its subclass says why).
        """
        workspace_id = await self.workspaces.resolve(workspace_id)
        try:
            return workspace_id, await self.client.models(workspace_id)
        except RouteMissing as exc:
            exc.message = (
                f"The model list is unavailable: this neuroflash API has no route GET {exc.paths[0]} "
                "(the gateway answered 404; the chat-completions reference page does not list it)."
            )
            exc.hint = (
                "generate does not need it: pass a model id such as gpt-4.1-mini (or openai/gpt-4.1-mini) "
                "and neuroflash decides whether the workspace's plan includes it."
            )
            raise

    async def quota_status(self, workspace_id: str | None) -> tuple[str, list[Quota]]:
        """The workspace meant and its quotas, read afresh from the upstream (and shared with every process).

        Raises:
            InvalidArguments: no workspace was named and the account has no default.
            FlashsnapError: the quotas could not be read (its subclass says why).
        """
        workspace_id = await self.workspaces.resolve(workspace_id)
        return workspace_id, await self.quotas.quotas(workspace_id, fresh=True)

    async def plan_generation(
        self, workspace_id: str | None, body: ChatRequest, brand_voice_id: str | None = None
    ) -> PlannedGeneration:
        """Everything about a generation that costs nothing, before anything that spends (or a question to the
        user): the workspace, the model on its plan, the quota (daily, monthly, fair use), the brand voice.

        With `brand_voice_id`, the voice's prompt goes first, as the system message before any other; the plan
        counts its words with the rest of the request's. Every refusal is counted by its reason.

        Raises:
            InvalidArguments: no workspace was named and the account has no default.
            NotFound: the brand voice is unknown in the workspace.
            ModelNotAvailable: the model is unknown, or not on the workspace's plan.
            QuotaExhausted: the daily or monthly word quota is spent.
            FairUseReached: the workspace is blocked for fair use.
            FlashsnapError: a read these checks need failed (its subclass says why).
        """
        try:
            return await self._plan(workspace_id, body, brand_voice_id)
        except FlashsnapError as exc:
            self._count_refusal(exc)
            raise

    async def generate(self, planned: PlannedGeneration) -> ChatResult:
        """Stream one planned generation and count its words; progress goes to the call's wait budget.

        Raises:
            QuotaExhausted: the upstream said the daily or monthly word quota is spent.
            FairUseReached: the upstream said the workspace is blocked for fair use.
            AccessDenied: a 403 the quota does not explain, naming the workspace.
            RateLimited: no generation slot or no rate-limit room within the call's wait budget, or an
                upstream 429 the quota does not explain.
            RouteMissing: no chat path exists at the API URL (nothing was processed).
            IncompleteStream: the stream broke off; words may have been spent (`maybe_processed`).
            FlashsnapError: any other upstream failure (its subclass says which).
        """
        try:
            return await self._generate(planned)
        except FlashsnapError as exc:
            self._count_refusal(exc)
            raise

    def _count_refusal(self, error: FlashsnapError) -> None:
        if (reason := refusal_reason(error)) is not None:
            self.metrics.generate_refused(reason)

    async def _plan(self, workspace_id: str | None, body: ChatRequest, brand_voice_id: str | None) -> PlannedGeneration:
        workspace_id = await self.workspaces.resolve(workspace_id)
        await self.models.admit(workspace_id, body.model)
        await self.quotas.admit(workspace_id)
        if brand_voice_id is not None:
            voice = await self.voices.prompt(workspace_id, brand_voice_id)
            body = body.model_copy(update={"messages": [ChatMessage(role="system", content=voice), *body.messages]})
        return PlannedGeneration(workspace_id, body)

    async def _generate(self, planned: PlannedGeneration) -> ChatResult:
        workspace_id, body = planned.workspace_id, planned.body
        budget = context.wait_budget(self.clock)
        received = {"chars": 0, "words": 0}

        async def relay(text: str) -> None:
            received["chars"] += len(text)
            received["words"] += len(text.split())
            await budget.report(received["chars"], f"{received['words']} words so far")

        async with self.generation_slots.hold(workspace_id, budget, scope=GENERATION_SLOTS):
            try:
                result = await self.client.chat(workspace_id, body, relay)
            except (QuotaExhausted, RateLimited, AccessDenied) as exc:
                # By status: a 429 is "rate limit or quota", a 403 "permissions or limit"; the quota says which.
                raise await self.quotas.explain(workspace_id, exc) from None
        await self.quotas.spend(workspace_id, result.words_used)
        self.metrics.words_spent(workspace_id, result.words_used)
        return result


@dataclass(frozen=True)
class PlannedGeneration:
    """A generation every free check admitted: the workspace it runs in and the request as it will be sent."""

    workspace_id: str
    body: ChatRequest

    @property
    def input_words(self) -> int:
        """The request's own words (the voice's prompt and `system` included), which some pages say count."""
        return sum(len(message.content.split()) for message in self.body.messages)

    def bounded(self, max_tokens: int) -> PlannedGeneration:
        """The same generation with `max_tokens` set."""
        return PlannedGeneration(self.workspace_id, self.body.model_copy(update={"max_tokens": max_tokens}))


def refusal_reason(error: FlashsnapError) -> str | None:
    """Why a generate was refused with no words spent (a metrics label), or None when it was not a refusal."""
    if isinstance(error, QuotaExhausted):
        return f"{error.period}_quota" if error.period else "quota"
    if isinstance(error, FairUseReached):
        return "fair_use"
    if isinstance(error, RateLimited):
        return "slots_busy" if error.scope == GENERATION_SLOTS else "rate_limited"
    return None
