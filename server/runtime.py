"""The runtime: what the lifespan opens once (the store, and each upstream's services by account) and shares."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pydantic import SecretStr

from server import context, known_secrets
from server.clock import Clock, SystemClock
from server.config import Settings
from server.errors import ConfigurationError
from server.neuralsnap import opening as neuralsnap_opening
from server.neuralsnap.opening import open_neuralsnap
from server.neuralsnap.service import NeuralSnapService
from server.neuroflash import opening as neuroflash_opening
from server.neuroflash.opening import open_neuroflash
from server.neuroflash.service import NeuroflashService
from server.observe.audit import AuditLog
from server.observe.logs import SecretMask
from server.observe.metrics import NO_METRICS, Metrics, Observer, serve_metrics
from server.scheduler.gate import Gate, GateView
from server.state.files import private_secret
from server.state.layout import CONSENT_SCOPE
from server.state.opening import StoreRefused, default_state_dir, open_store
from server.state.sealing import SealedStore
from server.state.store import Store
from server.upstream.opening import Opening, Service, Upstream

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Service)

# Each upstream room opens its own services; a new upstream is a new room and one line here.
UPSTREAMS: tuple[Callable[[Opening], Coroutine[Any, Any, Upstream[Any]]], ...] = (open_neuroflash, open_neuralsnap)
# And the store prefixes each room's secret seals (`server/state/sealing.py`).
SECRETS: tuple[Callable[[Settings], dict[str, SecretStr]], ...] = (
    neuroflash_opening.secrets,
    neuralsnap_opening.secrets,
)


@dataclass
class Runtime:
    """What the lifespan opens once and every tool call shares: the store, and each upstream's services by account.

    An upstream whose credentials are not configured has no account; asking for its service raises
    `MissingCredential`, naming the variable to set, so only the tools that need it fail.
    """

    settings: Settings
    clock: Clock
    store: Store
    upstreams: list[Upstream[Any]] = field(default_factory=list)  # in the order they were opened
    metrics: Observer = NO_METRICS
    audit: AuditLog | None = None  # FLASHSNAP_AUDIT_LOG: one record per call, resource read and prompt

    @functools.cached_property
    def mask(self) -> SecretMask:
        """Masks this server's secrets (and anything shaped like one) in text bound for a client."""
        return SecretMask(self.settings.secrets)

    def service(self, kind: type[S], account: str | None = None) -> S:
        """The service of class `kind` for `account` (a store prefix), or its upstream's default account.

        Raises:
            MissingCredential: that upstream has no such account configured (the error names what to set).
            LookupError: no upstream of this runtime serves `kind` (a bug, not a setting).
        """
        for upstream in self.upstreams:
            if upstream.kind is kind:
                service = cast(S, upstream.service(account))
                context.note_account(service.account.account)  # the running call's audit record names it
                return service
        raise LookupError(f"no upstream serves {kind.__name__}")

    def neuroflash(self, account: str | None = None) -> NeuroflashService:
        """The neuroflash service of `account`, or the default one.

        Raises:
            MissingCredential: NEUROFLASH_CLIENT_ID and NEUROFLASH_CLIENT_SECRET are not both set.
        """
        return self.service(NeuroflashService, account)

    def neuralsnap(self, account: str | None = None) -> NeuralSnapService:
        """The NeuralSnap service of `account`, or the default one.

        Raises:
            MissingCredential: NEURALSNAP_API_KEY is not set.
        """
        return self.service(NeuralSnapService, account)

    @property
    def gates(self) -> dict[str, Gate]:
        """Each upstream's default account's gate, by its scope ("neuroflash", "neuralsnap")."""
        return {s.gate.scope: s.gate for upstream in self.upstreams for s in list(upstream.services.values())[:1]}

    def _all_gates(self) -> list[Gate]:
        return [service.gate for upstream in self.upstreams for service in upstream.services.values()]

    async def rate_limits(self) -> list[GateView]:
        """What the scheduler knows of each upstream credential's rate limit, one view per gate."""
        return [await gate.view() for gate in self._all_gates()]


def _observer(settings: Settings) -> Observer:
    """Metrics when something exports them: the HTTP transports' /metrics, or FLASHSNAP_METRICS_PORT."""
    return Metrics() if settings.transport != "stdio" or settings.metrics_port is not None else NO_METRICS


def seals(settings: Settings) -> dict[str, SecretStr]:
    """The secret that seals each store prefix: each account's upstream secret, and for the consent marks (about
    any account) the request state's key, else all the upstream secrets together, else one of this process."""
    found = {prefix: secret for room in SECRETS for prefix, secret in room(settings).items()}
    shared = [s.get_secret_value() for s in (settings.neuroflash_client_secret, settings.neuralsnap_api_key) if s]
    consent = settings.request_state_key or SecretStr("\0".join(shared) if shared else secrets.token_hex(32))
    return {**found, CONSENT_SCOPE: consent}


async def open_state(settings: Settings, clock: Clock, *, readers: Sequence[Settings] = ()) -> Store:
    """The configured state store, checked once; what steers a request in it is sealed (`seals`).

    `readers`: other credentials whose documents this process may open too (`status` reads the sandbox's).

    Raises:
        ConfigurationError: Redis was asked for and does not answer (naming the host, never a password).
    """
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    try:
        store = await open_store(
            settings.store, clock, state_dir=settings.state_dir, redis_url=redis_url, redis_prefix=settings.redis_prefix
        )
    except StoreRefused as exc:
        raise ConfigurationError(f"cannot start: {exc}") from None
    return SealedStore(store, {k: v for each in (*readers, settings) for k, v in seals(each).items()})


AUDIT_KEY_FILE = "audit.key"  # in the state directory, when FLASHSNAP_AUDIT_KEY is unset


def audit_key(settings: Settings) -> str:
    """The audit log's key: FLASHSNAP_AUDIT_KEY, else the one kept in the state directory (made on first use)."""
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value()
    return private_secret((settings.state_dir or default_state_dir()) / AUDIT_KEY_FILE)


def open_audit(settings: Settings, clock: Clock) -> AuditLog | None:
    """The audit log's writer when FLASHSNAP_AUDIT_LOG is set; one of several when FLASHSNAP_WORKERS is above 1.

    Raises:
        ConfigurationError: the audit file or its key cannot be opened or made (the start stops, naming it).
    """
    if settings.audit_log is None:
        return None
    try:
        return AuditLog(settings.audit_log, audit_key(settings), clock, transport=settings.transport,
                        several=settings.workers > 1, max_bytes=settings.audit_max_bytes,
                        daily=settings.audit_rotate_daily)  # fmt: skip
    except OSError as exc:
        raise ConfigurationError(f"cannot start: the audit log {exc.filename}: {exc.strerror}") from None


@asynccontextmanager
async def open_runtime(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Open the state store and each upstream's services (clients, token, gates) for the life of the server."""
    clock = clock or SystemClock()
    known_secrets.hold(*settings.secrets)  # masked by value wherever a text leaves, also when an upstream quotes one
    async with AsyncExitStack() as stack:
        store = await open_state(settings, clock)
        stack.push_async_callback(store.aclose)
        log.info("shared state: %s (%s)", store.kind, store.describe())
        observer = _observer(settings)
        if settings.metrics_port is not None:
            stack.enter_context(serve_metrics(observer, settings.metrics_port))
        opening = Opening(settings, clock, store, stack, observer)
        upstreams = [await open_upstream(opening) for open_upstream in UPSTREAMS]
        audit = open_audit(settings, clock)
        if audit is not None:
            stack.callback(audit.close)
        yield Runtime(settings, clock, store, upstreams, metrics=observer, audit=audit)
