"""What the lifespan opens once and every tool call shares: clients, token manager, quota book."""

from __future__ import annotations

import functools
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx2
from pydantic import SecretStr

from server import __version__
from server.clock import Clock, SystemClock
from server.config import Settings
from server.credentials.tokens import BearerAuth, TokenManager
from server.errors import ConfigurationError, MissingCredential
from server.httpio import KEEPALIVE_EXPIRY_S
from server.neuralsnap.client import NeuralSnapClient
from server.neuroflash.catalog import ModelCatalog
from server.neuroflash.client import NeuroflashClient
from server.neuroflash.quota import QuotaBook
from server.neuroflash.workspaces import WorkspaceResolver
from server.observe.logs import SecretMask
from server.observe.metrics import NO_METRICS, Metrics, Observer, fingerprint, serve_metrics
from server.scheduler.gate import Gate
from server.scheduler.slots import Slots
from server.scheduler.transport import ScheduledTransport
from server.state import accounts
from server.state.opening import StoreRefused, default_state_dir, open_store
from server.state.store import Store

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
    generation_slots: Slots  # at most FLASHSNAP_MAX_CONCURRENT_GENERATIONS streams per workspace, all processes
    models: ModelCatalog  # an unknown or unavailable model is refused before anything is sent


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    store: Store
    _neuroflash: Neuroflash | None = None
    _neuralsnap: NeuralSnapClient | None = None
    gates: dict[str, Gate] = field(default_factory=dict)  # one per upstream credential
    metrics: Observer = NO_METRICS

    @functools.cached_property
    def mask(self) -> SecretMask:
        """Masks this server's secrets (and anything shaped like one) in text bound for a client."""
        return SecretMask(self.settings.secrets)

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
        limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY_S),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


def _scheduled(gate: Gate, clock: Clock, observer: Observer) -> ScheduledTransport:
    return ScheduledTransport(httpx2.AsyncHTTPTransport(retries=0), gate, clock, observer=observer)


def _observer(settings: Settings) -> Observer:
    """Metrics when something exports them: the HTTP transports' /metrics, or FLASHSNAP_METRICS_PORT."""
    return Metrics() if settings.transport != "stdio" or settings.metrics_port is not None else NO_METRICS


async def _register(runtime: Runtime, account: str, service: str, api_url: str) -> None:
    """List the account for `flashsnap-mcp status`, and name its credential in the metrics (a hash, no secret)."""
    runtime.metrics.credential(service, fingerprint(account))
    entry = accounts.Account(account, service, httpx2.URL(api_url).host, runtime.clock.now())
    await accounts.register(runtime.store, entry)


def account_key(settings: Settings, service: str, url: str, credential: str) -> str:
    """The state-store prefix of one credential: a hash of what identifies it, never the secret itself.

    Sandbox state lives in a namespace of its own, so it never mixes with a real account's. The
    sandbox's emulator listens on a new port at each start, but its world lives in the state
    directory: that directory (on this host) identifies the sandbox account, not the URL.
    """
    if settings.sandbox:
        url = f"sandbox-world:{socket.gethostname()}:{settings.state_dir or default_state_dir()}"
    digest = hashlib.sha256("\0".join((service, url, credential)).encode()).hexdigest()[:24]
    return f"{'sandbox' if settings.sandbox else 'live'}:{digest}"


async def open_state(settings: Settings, clock: Clock) -> Store:
    """The configured state store; Redis that does not answer stops the start (ConfigurationError)."""
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    try:
        return await open_store(
            settings.store, clock, state_dir=settings.state_dir, redis_url=redis_url, redis_prefix=settings.redis_prefix
        )
    except StoreRefused as exc:
        raise ConfigurationError(f"cannot start: {exc}") from None


@asynccontextmanager
async def open_runtime(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Open the state store and one HTTP client per upstream (and the token manager) for the life of the server."""
    clock = clock or SystemClock()
    async with AsyncExitStack() as stack:
        store = await open_state(settings, clock)
        stack.push_async_callback(store.aclose)
        log.info("shared state: %s (%s)", store.kind, store.describe())
        runtime = Runtime(settings, clock, store, metrics=_observer(settings))
        if settings.metrics_port is not None:
            stack.enter_context(serve_metrics(runtime.metrics, settings.metrics_port))
        observer = runtime.metrics
        if settings.neuroflash_configured:
            assert settings.neuroflash_client_id is not None
            assert settings.neuroflash_client_secret is not None
            account = account_key(settings, "neuroflash", settings.neuroflash_token_url, settings.neuroflash_client_id)
            identity = await stack.enter_async_context(_http_client(settings, settings.neuroflash_token_url))
            tokens = await stack.enter_async_context(
                TokenManager(
                    identity,
                    token_url=settings.neuroflash_token_url,
                    client_id=settings.neuroflash_client_id,
                    client_secret=settings.neuroflash_client_secret,
                    clock=clock,
                    store=store,
                    key=f"{account}:token",
                    observer=observer,
                )
            )
            gate = runtime.gates["neuroflash"] = await stack.enter_async_context(
                Gate("neuroflash", clock, store=store, key=f"{account}:gate", probe_first=False,
                     flight_ttl_s=settings.timeout_s + 10, observer=observer)
            )  # fmt: skip
            await _register(runtime, account, "neuroflash", settings.neuroflash_api_url)
            http = await stack.enter_async_context(
                _http_client(
                    settings, settings.neuroflash_api_url, BearerAuth(tokens), _scheduled(gate, clock, observer)
                )
            )
            client = NeuroflashClient(http, clock, idle_s=settings.timeout_s, max_s=settings.max_generation_s)
            slots = await stack.enter_async_context(
                Slots(
                    clock, settings.max_concurrent_generations, store=store, key=f"{account}:slots", observer=observer
                )
            )
            runtime._neuroflash = Neuroflash(
                client=client,
                tokens=tokens,
                workspaces=WorkspaceResolver(client, settings.neuroflash_workspace_id),
                quotas=QuotaBook(client, clock, store=store, key=f"{account}:quota"),
                generation_slots=slots,
                models=ModelCatalog(client, clock),
            )
        else:
            log.warning("neuroflash tools are disabled: set NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET")
        if settings.neuralsnap_api_key is not None:
            key = settings.neuralsnap_api_key.get_secret_value()
            account = account_key(settings, "neuralsnap", settings.neuralsnap_api_url, key)
            gate = runtime.gates["neuralsnap"] = await stack.enter_async_context(
                Gate("neuralsnap", clock, store=store, key=f"{account}:gate", probe_first=True,
                     flight_ttl_s=settings.timeout_s + 10, observer=observer)
            )  # fmt: skip
            await _register(runtime, account, "neuralsnap", settings.neuralsnap_api_url)
            http = await stack.enter_async_context(
                _http_client(
                    settings,
                    settings.neuralsnap_api_url,
                    ApiKeyAuth(settings.neuralsnap_api_key),
                    _scheduled(gate, clock, observer),
                )
            )
            runtime._neuralsnap = NeuralSnapClient(http)
        else:
            log.warning("NeuralSnap tools are disabled: set NEURALSNAP_API_KEY")
        yield runtime
