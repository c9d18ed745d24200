"""Opening NeuralSnap: per API key, its gate (seeded from a kept plan), HTTP client and service."""

from __future__ import annotations

import logging

from pydantic import SecretStr

from server.config import Settings
from server.credentials.auth import ApiKeyAuth
from server.neuralsnap import profile
from server.neuralsnap.client import NeuralSnapClient
from server.neuralsnap.service import NeuralSnapService
from server.scheduler.gate import Gate
from server.state import layout
from server.upstream.opening import Opening, Upstream, account_key

log = logging.getLogger(__name__)
SERVICE = "neuralsnap"  # the gate's scope and the accounts index's service name


async def open_neuralsnap(opening: Opening) -> Upstream[NeuralSnapService]:
    """NeuralSnap's services by account: the configured API key's, or none (its tools then fail)."""
    upstream = Upstream(NeuralSnapService, "NeuralSnap", "NEURALSNAP_API_KEY")
    if opening.settings.neuralsnap_api_key is not None:
        upstream.add(await _open_account(opening))
    else:
        log.warning("NeuralSnap tools are disabled: set NEURALSNAP_API_KEY")
    return upstream


def secrets(settings: Settings) -> dict[str, SecretStr]:
    """Which store prefix the API key seals (`server/state/sealing.py`): its account's."""
    key = settings.neuralsnap_api_key
    if key is None:
        return {}
    return {account_key(settings, SERVICE, settings.neuralsnap_api_url, key.get_secret_value()): key}


async def _open_account(opening: Opening) -> NeuralSnapService:
    """The configured key's service (one account today)."""
    settings, clock = opening.settings, opening.clock
    assert settings.neuralsnap_api_key is not None
    account = account_key(
        settings, SERVICE, settings.neuralsnap_api_url, settings.neuralsnap_api_key.get_secret_value()
    )
    keys = layout.AccountKeys(account)
    gate = await opening.gate(SERVICE, keys, probe_first=True)
    await opening.register(account, SERVICE, settings.neuralsnap_api_url)
    await _seed_from_profile(gate, opening, keys.profile)
    http = await opening.http_client(settings.neuralsnap_api_url, ApiKeyAuth(settings.neuralsnap_api_key), gate)
    return NeuralSnapService(NeuralSnapClient(http, clock), account=keys, gate=gate)


async def _seed_from_profile(gate: Gate, opening: Opening, key: str) -> None:
    """Start the gate from the plan's request rate, if `flashsnap-mcp check` kept the profile (never fetched here)."""
    kept = profile.read_profile(await opening.store.get(key), opening.clock.now())
    if kept is not None and (rate := profile.request_rate(kept[1])) is not None:
        await gate.seed(rate)
