"""The runtime: what the lifespan opens once (store, gates, one client and service per upstream) and shares."""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx2

from server import __version__
from server.clock import Clock, SystemClock
from server.config import Settings
from server.credentials.auth import ApiKeyAuth, BearerAuth
from server.credentials.tokens import TokenManager
from server.errors import ConfigurationError, MissingCredential
from server.httpio import KEEPALIVE_EXPIRY_S, tls_context
from server.neuralsnap import profile
from server.neuralsnap.client import NeuralSnapClient
from server.neuralsnap.service import NeuralSnapService
from server.neuroflash.catalog import ModelCatalog
from server.neuroflash.client import NeuroflashClient
from server.neuroflash.quota import QuotaBook
from server.neuroflash.routes import RouteBook
from server.neuroflash.service import NeuroflashService
from server.neuroflash.voices import VoiceBook
from server.neuroflash.workspaces import WorkspaceResolver
from server.observe.logs import SecretMask
from server.observe.metrics import NO_METRICS, Metrics, Observer, fingerprint, serve_metrics
from server.scheduler.gate import Gate, GateView
from server.scheduler.slots import Slots
from server.scheduler.transport import ScheduledTransport
from server.state import accounts, layout
from server.state.opening import StoreRefused, default_state_dir, open_store
from server.state.store import Store

log = logging.getLogger(__name__)
USER_AGENT = f"flashsnap-mcp/{__version__}"


@dataclass
class Runtime:
    """What the lifespan opens once and every tool call shares: the store, the gates, one service per upstream.

    A service whose credentials are not configured is absent; asking for it raises
    `MissingCredential`, naming the variable to set, so only the tools that need it fail.
    """

    settings: Settings
    clock: Clock
    store: Store
    _neuroflash: NeuroflashService | None = None
    _neuralsnap: NeuralSnapService | None = None
    gates: dict[str, Gate] = field(default_factory=dict)  # one per upstream credential
    metrics: Observer = NO_METRICS

    @functools.cached_property
    def mask(self) -> SecretMask:
        """Masks this server's secrets (and anything shaped like one) in text bound for a client."""
        return SecretMask(self.settings.secrets)

    def neuroflash(self) -> NeuroflashService:
        """The neuroflash service.

        Raises:
            MissingCredential: NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET are not both set.
        """
        if self._neuroflash is None:
            raise MissingCredential("NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET", "neuroflash")
        return self._neuroflash

    def neuralsnap(self) -> NeuralSnapService:
        """The NeuralSnap service.

        Raises:
            MissingCredential: NEURALSNAP_API_KEY is not set.
        """
        if self._neuralsnap is None:
            raise MissingCredential("NEURALSNAP_API_KEY", "NeuralSnap")
        return self._neuralsnap

    async def rate_limits(self) -> list[GateView]:
        """What the scheduler knows of each upstream credential's rate limit, one view per gate."""
        return [await gate.view() for gate in self.gates.values()]


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
        verify=tls_context(),
    )


def _scheduled(gate: Gate, clock: Clock, observer: Observer) -> ScheduledTransport:
    return ScheduledTransport(
        httpx2.AsyncHTTPTransport(retries=0, verify=tls_context()), gate, clock, observer=observer
    )


def _observer(settings: Settings) -> Observer:
    """Metrics when something exports them: the HTTP transports' /metrics, or FLASHSNAP_METRICS_PORT."""
    return Metrics() if settings.transport != "stdio" or settings.metrics_port is not None else NO_METRICS


async def _register(runtime: Runtime, account: str, service: str, api_url: str) -> None:
    """List the account for `flashsnap-mcp status`, and name its credential in the metrics (a hash, no secret)."""
    runtime.metrics.credential(service, fingerprint(account))
    entry = accounts.Account(account, service, httpx2.URL(api_url).host, runtime.clock.now())
    await accounts.register(runtime.store, entry)


async def _seed_from_profile(gate: Gate, store: Store, key: str, clock: Clock) -> None:
    """Start the gate from the plan's request rate, if `flashsnap-mcp check` kept the profile (never fetched here)."""
    kept = profile.read_profile(await store.get(key), clock.now())
    if kept is not None and (rate := profile.request_rate(kept[1])) is not None:
        await gate.seed(rate)


def account_key(settings: Settings, service: str, url: str, credential: str) -> str:
    """The state-store prefix of one credential (see server/state/layout.py).

    The sandbox's emulator listens on a new port at each start, but its world lives in the state
    directory: that directory (on this host) identifies the sandbox account, not the URL.
    """
    if settings.sandbox:
        url = f"sandbox-world:{socket.gethostname()}:{settings.state_dir or default_state_dir()}"
    return layout.account_key(service, url, credential, sandbox=settings.sandbox)


async def open_state(settings: Settings, clock: Clock) -> Store:
    """The configured state store, checked once.

    Raises:
        ConfigurationError: Redis was asked for and does not answer (naming the host, never a password).
    """
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
            keys = layout.AccountKeys(account)
            identity = await stack.enter_async_context(_http_client(settings, settings.neuroflash_token_url))
            tokens = await stack.enter_async_context(
                TokenManager(
                    identity,
                    token_url=settings.neuroflash_token_url,
                    client_id=settings.neuroflash_client_id,
                    client_secret=settings.neuroflash_client_secret,
                    clock=clock,
                    store=store,
                    key=keys.token,
                    observer=observer,
                )
            )
            gate = runtime.gates["neuroflash"] = await stack.enter_async_context(
                Gate("neuroflash", clock, store=store, key=keys.gate, probe_first=False,
                     flight_ttl_s=settings.timeout_s + 10, observer=observer)
            )  # fmt: skip
            await _register(runtime, account, "neuroflash", settings.neuroflash_api_url)
            http = await stack.enter_async_context(
                _http_client(
                    settings, settings.neuroflash_api_url, BearerAuth(tokens), _scheduled(gate, clock, observer)
                )
            )
            # What answers at this API URL (the chat path, the model list) is shared by every credential using it.
            route_keys = layout.RouteKeys(
                layout.routes_key("neuroflash", settings.neuroflash_api_url, sandbox=settings.sandbox)
            )
            client = NeuroflashClient(
                http,
                clock,
                idle_s=settings.timeout_s,
                max_s=settings.max_generation_s,
                routes=RouteBook(clock, store=store, keys=route_keys),
                chat_path=settings.neuroflash_chat_path,
            )
            slots = await stack.enter_async_context(
                Slots(clock, settings.max_concurrent_generations, store=store, key=keys.slots, observer=observer)
            )
            runtime._neuroflash = NeuroflashService(
                client=client,
                tokens=tokens,
                workspaces=WorkspaceResolver(client, settings.neuroflash_workspace_id),
                quotas=QuotaBook(client, clock, store=store, key=keys.quota),
                generation_slots=slots,
                models=ModelCatalog(client, clock),
                clock=clock,
                metrics=observer,
                voices=VoiceBook(client, clock, store=store, keys=keys),
            )
        else:
            log.warning("neuroflash tools are disabled: set NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET")
        if settings.neuralsnap_api_key is not None:
            key = settings.neuralsnap_api_key.get_secret_value()
            account = account_key(settings, "neuralsnap", settings.neuralsnap_api_url, key)
            keys = layout.AccountKeys(account)
            gate = runtime.gates["neuralsnap"] = await stack.enter_async_context(
                Gate("neuralsnap", clock, store=store, key=keys.gate, probe_first=True,
                     flight_ttl_s=settings.timeout_s + 10, observer=observer)
            )  # fmt: skip
            await _register(runtime, account, "neuralsnap", settings.neuralsnap_api_url)
            await _seed_from_profile(gate, store, keys.profile, clock)
            http = await stack.enter_async_context(
                _http_client(
                    settings,
                    settings.neuralsnap_api_url,
                    ApiKeyAuth(settings.neuralsnap_api_key),
                    _scheduled(gate, clock, observer),
                )
            )
            runtime._neuralsnap = NeuralSnapService(NeuralSnapClient(http, clock))
        else:
            log.warning("NeuralSnap tools are disabled: set NEURALSNAP_API_KEY")
        yield runtime
