"""What the lifespan opens once and every tool call shares: clients, token manager, quota book."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Generator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx2
from pydantic import SecretStr

from server import __version__
from server.clock import Clock, SystemClock
from server.config import Settings
from server.credentials import BearerAuth, TokenManager
from server.errors import MissingCredential
from server.logs import SecretMask
from server.quota import QuotaBook
from server.scheduler.gate import Gate
from server.scheduler.transport import ScheduledTransport
from server.upstream.neuralsnap import NeuralSnapClient
from server.upstream.neuroflash import NeuroflashClient
from server.workspaces import WorkspaceResolver

log = logging.getLogger(__name__)
USER_AGENT = f"flashsnap-mcp/{__version__}"


class ApiKeyAuth(httpx2.Auth):
    """NeuralSnap's bearer API key, kept out of the client's default headers."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        yield request


@dataclass
class Neuroflash:
    """The neuroflash side: its client and the state that guards generation."""

    client: NeuroflashClient
    tokens: TokenManager
    workspaces: WorkspaceResolver
    quotas: QuotaBook
    max_concurrent_generations: int
    _slots: dict[str, anyio.CapacityLimiter] = field(default_factory=dict)

    def generation_slots(self, workspace_id: str) -> anyio.CapacityLimiter:
        """At most `max_concurrent_generations` streams per workspace at once."""
        if workspace_id not in self._slots:
            self._slots[workspace_id] = anyio.CapacityLimiter(self.max_concurrent_generations)
        return self._slots[workspace_id]


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    _neuroflash: Neuroflash | None = None
    _neuralsnap: NeuralSnapClient | None = None
    gates: dict[str, Gate] = field(default_factory=dict)  # one per upstream credential

    @functools.cached_property
    def mask(self) -> SecretMask:
        """Masks this server's secrets (and anything shaped like one) in text bound for a client."""
        known = (self.settings.neuroflash_client_secret, self.settings.neuralsnap_api_key, self.settings.http_token)
        return SecretMask(s.get_secret_value() for s in known if s is not None)

    def neuroflash(self) -> Neuroflash:
        if self._neuroflash is None:
            raise MissingCredential("NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET", "neuroflash")
        return self._neuroflash

    def neuralsnap(self) -> NeuralSnapClient:
        if self._neuralsnap is None:
            raise MissingCredential("NEURALSNAP_API_KEY", "NeuralSnap")
        return self._neuralsnap


def _http_client(
    settings: Settings,
    base_url: str,
    auth: httpx2.Auth | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        base_url=base_url,
        auth=auth,
        transport=transport,
        timeout=httpx2.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s)),
        limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


def _scheduled(gate: Gate, clock: Clock) -> ScheduledTransport:
    return ScheduledTransport(httpx2.AsyncHTTPTransport(retries=0), gate, clock)


@asynccontextmanager
async def open_runtime(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Open one HTTP client per upstream (and the token manager) for the life of the server."""
    clock = clock or SystemClock()
    async with AsyncExitStack() as stack:
        runtime = Runtime(settings, clock)
        if settings.neuroflash_configured:
            assert settings.neuroflash_client_id is not None
            assert settings.neuroflash_client_secret is not None
            identity = await stack.enter_async_context(_http_client(settings, settings.neuroflash_token_url))
            tokens = await stack.enter_async_context(
                TokenManager(
                    identity,
                    token_url=settings.neuroflash_token_url,
                    client_id=settings.neuroflash_client_id,
                    client_secret=settings.neuroflash_client_secret,
                    clock=clock,
                )
            )
            gate = runtime.gates["neuroflash"] = Gate("neuroflash", clock, probe_first=False)
            http = await stack.enter_async_context(
                _http_client(settings, settings.neuroflash_api_url, BearerAuth(tokens), _scheduled(gate, clock))
            )
            client = NeuroflashClient(http)
            runtime._neuroflash = Neuroflash(
                client=client,
                tokens=tokens,
                workspaces=WorkspaceResolver(client, settings.neuroflash_workspace_id),
                quotas=QuotaBook(client, clock),
                max_concurrent_generations=settings.max_concurrent_generations,
            )
        else:
            log.warning("neuroflash tools are disabled: set NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET")
        if settings.neuralsnap_api_key is not None:
            gate = runtime.gates["neuralsnap"] = Gate("neuralsnap", clock, probe_first=True)
            http = await stack.enter_async_context(
                _http_client(
                    settings,
                    settings.neuralsnap_api_url,
                    ApiKeyAuth(settings.neuralsnap_api_key),
                    _scheduled(gate, clock),
                )
            )
            runtime._neuralsnap = NeuralSnapClient(http)
        else:
            log.warning("NeuralSnap tools are disabled: set NEURALSNAP_API_KEY")
        yield runtime
