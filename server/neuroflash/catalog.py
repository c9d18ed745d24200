"""The models a workspace can use, cached, so a generate with an unknown or unavailable model is never sent."""

from __future__ import annotations

import logging

from server.clock import Clock
from server.errors import ModelNotAvailable, RouteMissing, UpstreamUnavailable
from server.neuroflash.client import NeuroflashClient
from server.neuroflash.wire import Model

log = logging.getLogger(__name__)

TTL_S = 600.0  # plans change rarely; a model not found refreshes the list at once anyway


class ModelCatalog:
    def __init__(self, client: NeuroflashClient, clock: Clock, ttl_s: float = TTL_S) -> None:
        self._client = client
        self._clock = clock
        self._ttl_s = ttl_s
        self._models: dict[str, tuple[float, list[Model]]] = {}  # workspace -> (fetched at, models)

    async def _list(self, workspace_id: str, *, fresh: bool) -> list[Model]:
        cached = self._models.get(workspace_id)
        if cached is not None and not fresh and self._clock.now() - cached[0] < self._ttl_s:
            return cached[1]
        models = await self._client.models(workspace_id)
        self._models[workspace_id] = (self._clock.now(), models)
        return models

    async def admit(self, workspace_id: str, model_id: str) -> None:
        """Refuse a model the workspace does not have, before anything is sent; refresh once when it is unknown.

        When the list cannot be read, the upstream judges the model itself: a broken list must not stop generation.
        A model list whose route is missing (remembered for every process) is not asked for at all; a 5xx or a
        timeout is transient and leaves the check on for the next call.

        Raises:
            ModelNotAvailable: the list was read, and the model is not in it or not on the plan (nothing sent).
        """
        if await self._client.routes.models_missing():
            return
        try:
            found = _find(await self._list(workspace_id, fresh=False), model_id)
            if found is None:
                found = _find(await self._list(workspace_id, fresh=True), model_id)
        except RouteMissing:
            log.info("this neuroflash API has no model list; the upstream will judge the model")
            return
        except UpstreamUnavailable:
            log.info("the model list of a workspace could not be read; the upstream will judge the model")
            return
        if found is None:
            raise ModelNotAvailable(
                f"neuroflash has no model named {model_id[:100]!r}; nothing was sent.",
                hint="Call list_models to see the models this workspace can use, and pass one of their ids.",
            )
        if not found.available:
            raise ModelNotAvailable(
                f"The model {found.id!r} is not on this workspace's plan; nothing was sent.",
                hint="Call list_models to see the models this workspace's plan includes, and pick one of them.",
            )


def _find(models: list[Model], model_id: str) -> Model | None:
    """`gpt-4.1-mini` or `openai/gpt-4.1-mini`, as the chat endpoint accepts both."""
    provider, _, bare = model_id.rpartition("/")
    return next((m for m in models if m.id == bare and provider in ("", m.provider)), None)
