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
from server.scheduler.slots import Slots

GENERATION_SLOTS = "neuroflash generations"  # the scope a generation waiting for a free stream reports


@dataclass
class NeuroflashService:
    """neuroflash as the tools see it; one per process, opened by the runtime."""

    client: NeuroflashClient
    tokens: TokenManager
    workspaces: WorkspaceResolver
    quotas: QuotaBook
    generation_slots: Slots  # at most FLASHSNAP_MAX_CONCURRENT_GENERATIONS streams per workspace, all processes
    models: ModelCatalog  # an unknown or unavailable model is refused before anything is sent
    clock: Clock
    metrics: Observer
    voices: VoiceBook

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

    async def generate(
        self, workspace_id: str | None, body: ChatRequest, brand_voice_id: str | None = None
    ) -> tuple[str, ChatResult]:
        """Stream one generation and count its words; progress goes to the call's wait budget.

        Returns the workspace used and the result. Nothing is sent when the workspace, the
        model or the quota rules the generation out; every refusal is counted by its reason.
        With `brand_voice_id`, the voice's prompt goes first, as the system message before any other.

        Raises:
            InvalidArguments: no workspace was named and the account has no default.
            NotFound: the brand voice is unknown in the workspace (nothing generated).
            ModelNotAvailable: the model is unknown, or not on the workspace's plan (nothing sent).
            QuotaExhausted: the daily or monthly word quota is spent (nothing sent, or the upstream said so).
            FairUseReached: the workspace is blocked for fair use (nothing sent, or the upstream said so).
            AccessDenied: a 403 the quota does not explain, naming the workspace.
            RateLimited: no generation slot or no rate-limit room within the call's wait budget, or an
                upstream 429 the quota does not explain.
            RouteMissing: no chat path exists at the API URL (nothing was processed).
            IncompleteStream: the stream broke off; words may have been spent (`maybe_processed`).
            FlashsnapError: any other upstream failure (its subclass says which).
        """
        try:
            return await self._generate(workspace_id, body, brand_voice_id)
        except FlashsnapError as exc:
            if (reason := refusal_reason(exc)) is not None:
                self.metrics.generate_refused(reason)
            raise

    async def _generate(
        self, workspace_id: str | None, body: ChatRequest, brand_voice_id: str | None
    ) -> tuple[str, ChatResult]:
        workspace_id = await self.workspaces.resolve(workspace_id)
        await self.models.admit(workspace_id, body.model)
        await self.quotas.admit(workspace_id)
        if brand_voice_id is not None:
            voice = await self.voices.prompt(workspace_id, brand_voice_id)
            body = body.model_copy(update={"messages": [ChatMessage(role="system", content=voice), *body.messages]})
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
        return workspace_id, result


def refusal_reason(error: FlashsnapError) -> str | None:
    """Why a generate was refused with no words spent (a metrics label), or None when it was not a refusal."""
    if isinstance(error, QuotaExhausted):
        return f"{error.period}_quota" if error.period else "quota"
    if isinstance(error, FairUseReached):
        return "fair_use"
    if isinstance(error, RateLimited):
        return "slots_busy" if error.scope == GENERATION_SLOTS else "rate_limited"
    return None
