"""Opening neuroflash: per credential, its token manager, gate, HTTP client, generation slots and service."""

from __future__ import annotations

import logging

from pydantic import SecretStr

from server.config import Settings
from server.credentials.auth import BearerAuth
from server.credentials.tokens import TokenManager
from server.neuroflash.catalog import ModelCatalog
from server.neuroflash.client import NeuroflashClient
from server.neuroflash.quota import QuotaBook
from server.neuroflash.routes import RouteBook
from server.neuroflash.service import NeuroflashService
from server.neuroflash.voices import VoiceBook
from server.neuroflash.workspaces import WorkspaceResolver
from server.scheduler.slots import Slots
from server.state import layout
from server.upstream.opening import Opening, Upstream, account_key

log = logging.getLogger(__name__)
SERVICE = "neuroflash"  # the gate's scope and the accounts index's service name


async def open_neuroflash(opening: Opening) -> Upstream[NeuroflashService]:
    """neuroflash's services by account: the configured client credentials', or none (its tools then fail)."""
    upstream = Upstream(NeuroflashService, "neuroflash", "NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET")
    settings = opening.settings
    if settings.neuroflash_client_id and settings.neuroflash_client_secret:
        upstream.add(await _open_account(opening, settings.neuroflash_client_id))
    else:
        log.warning("neuroflash tools are disabled: set NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET")
    return upstream


def secrets(settings: Settings) -> dict[str, SecretStr]:
    """The store prefixes the client secret seals (`server/state/sealing.py`): the account's, its API URL's routes'."""
    if not (settings.neuroflash_client_id and settings.neuroflash_client_secret):
        return {}
    account = account_key(settings, SERVICE, settings.neuroflash_token_url, settings.neuroflash_client_id)
    return {account: settings.neuroflash_client_secret, _route_keys(settings).routes: settings.neuroflash_client_secret}


def _route_keys(settings: Settings) -> layout.RouteKeys:
    # What answers at this API URL (the chat path, the model list) is shared by every credential using it.
    return layout.RouteKeys(layout.routes_key(SERVICE, settings.neuroflash_api_url, sandbox=settings.sandbox))


async def _open_account(opening: Opening, client_id: str) -> NeuroflashService:
    """One credential's service (its secret is read from the settings: one account today)."""
    settings, clock, store, observer = opening.settings, opening.clock, opening.store, opening.observer
    assert settings.neuroflash_client_secret is not None
    account = account_key(settings, SERVICE, settings.neuroflash_token_url, client_id)
    keys = layout.AccountKeys(account)
    identity = await opening.http_client(settings.neuroflash_token_url)
    tokens = await opening.stack.enter_async_context(
        TokenManager(
            identity,
            token_url=settings.neuroflash_token_url,
            client_id=client_id,
            client_secret=settings.neuroflash_client_secret,
            clock=clock,
            store=store,
            key=keys.token,
            observer=observer,
        )
    )
    gate = await opening.gate(SERVICE, keys, probe_first=False)
    await opening.register(account, SERVICE, settings.neuroflash_api_url)
    http = await opening.http_client(settings.neuroflash_api_url, BearerAuth(tokens), gate)
    route_keys = _route_keys(settings)
    client = NeuroflashClient(
        http,
        clock,
        idle_s=settings.timeout_s,
        max_s=settings.max_generation_s,
        routes=RouteBook(clock, store=store, keys=route_keys),
        chat_path=settings.neuroflash_chat_path,
    )
    slots = await opening.stack.enter_async_context(
        Slots(clock, settings.max_concurrent_generations, store=store, key=keys.slots, observer=observer)
    )
    return NeuroflashService(
        client=client,
        tokens=tokens,
        workspaces=WorkspaceResolver(client, settings.neuroflash_workspace_id),
        quotas=QuotaBook(client, clock, store=store, key=keys.quota),
        generation_slots=slots,
        models=ModelCatalog(client, clock),
        clock=clock,
        metrics=observer,
        voices=VoiceBook(client, clock, store=store, keys=keys),
        account=keys,
        gate=gate,
    )
