"""The runtime: what the lifespan opens once (the store, and each upstream's services by account) and shares."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

import anyio
from anyio.abc import TaskGroup, TaskStatus
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
from server.upstream import accounts as team_accounts
from server.upstream.accounts import Account
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
    accounts: tuple[str, ...] = ()  # the team file's accounts, by name, opened beside the default one
    # Opens an account the team file gained since start (`open_account`); None where there is no team file.
    _later: Callable[[str], Coroutine[Any, Any, None]] | None = None

    @functools.cached_property
    def mask(self) -> SecretMask:
        """Masks this server's secrets (and anything shaped like one) in text bound for a client."""
        return SecretMask(self.settings.secrets)

    def service(self, kind: type[S], account: str | None = None) -> S:
        """The service of class `kind` for `account` (a store prefix); without one, the account the team file
        routes the caller to (`account = "<name>"`), else its upstream's default account.

        Raises:
            MissingCredential: that upstream has no such account configured (the error names what to set).
            LookupError: no upstream of this runtime serves `kind` (a bug, not a setting).
        """
        for upstream in self.upstreams:
            if upstream.kind is kind:
                return cast(S, self._routed(upstream, account))
        raise LookupError(f"no upstream serves {kind.__name__}")

    def _routed(self, upstream: Upstream[Any], account: str | None) -> Service:
        caller = context.principal() if account is None else None
        name = caller.account if caller is not None else None
        if name is not None:
            service: Service = upstream.named_service(name)
            context.note_account(name)  # the running call's audit record names the account it was routed to
            return service
        service = cast(Service, upstream.service(account))
        context.note_account(service.account.account)  # the default account: its store prefix
        return service

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

    async def open_account(self, name: str) -> None:
        """Open the team file's account `name` when a reloaded file routes someone to it and it is not open yet.

        An account the file does not declare (or whose credentials cannot be read: logged, naming the variable
        or file, never a value) stays closed, and the call that wanted it fails with `MissingCredential`.
        """
        if name not in self.accounts and self._later is not None:
            await self._later(name)

    @property
    def gates(self) -> dict[str, Gate]:
        """Each upstream's default account's gate, by its scope ("neuroflash", "neuralsnap")."""
        defaults = [upstream.services[upstream.default] for upstream in self.upstreams if upstream.default is not None]
        return {service.gate.scope: service.gate for service in defaults}

    def _all_gates(self) -> list[Gate]:
        return [service.gate for upstream in self.upstreams for service in upstream.services.values()]

    async def rate_limits(self) -> list[GateView]:
        """What the scheduler knows of each upstream credential's rate limit, one view per gate."""
        return [await gate.view() for gate in self._all_gates()]


def _observer(settings: Settings) -> Observer:
    """Metrics when something exports them: the HTTP transports' /metrics, or FLASHSNAP_METRICS_PORT."""
    return Metrics() if settings.transport != "stdio" or settings.metrics_port is not None else NO_METRICS


def seals(settings: Settings, accounts: Sequence[Account] = ()) -> dict[str, SecretStr]:
    """The secret that seals each store prefix: each account's upstream secret (the environment's and the team
    file's `accounts`), and for the consent marks (about any account) the request state's key, else all the
    upstream secrets together, else one of this process."""
    every = [settings, *(account.settings(settings) for account in accounts)]
    found = {prefix: secret for each in every for room in SECRETS for prefix, secret in room(each).items()}
    shared = [s.get_secret_value() for e in every for s in (e.neuroflash_client_secret, e.neuralsnap_api_key) if s]
    consent = settings.request_state_key or SecretStr("\0".join(shared) if shared else secrets.token_hex(32))
    return {**found, CONSENT_SCOPE: consent}


async def open_state(
    settings: Settings, clock: Clock, *, readers: Sequence[Settings] = (), accounts: Sequence[Account] = ()
) -> Store:
    """The configured state store, checked once; what steers a request in it is sealed (`seals`).

    `readers`: other credentials whose documents this process may open too (`status` reads the sandbox's).
    `accounts`: the team file's accounts, whose documents their own secrets seal.

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
    sealed = {k: v for each in readers for k, v in seals(each).items()} | seals(settings, accounts)
    return SealedStore(store, sealed)


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
    accounts = team_accounts.from_team_file(settings.team_file)  # read first: a missing credential stops the start
    every = [settings, *(account.settings(settings) for account in accounts)]
    known_secrets.hold(*(s for each in every for s in each.secrets))  # masked by value wherever a text leaves
    async with AsyncExitStack() as stack:
        store = await open_state(settings, clock, accounts=accounts)
        stack.push_async_callback(store.aclose)
        log.info("shared state: %s (%s)", store.kind, store.describe())
        observer = _observer(settings)
        if settings.metrics_port is not None:
            stack.enter_context(serve_metrics(observer, settings.metrics_port))
        opening = Opening(settings, clock, store, stack, observer)
        upstreams = [await open_upstream(opening) for open_upstream in UPSTREAMS]
        await _open_accounts(opening, accounts, upstreams)
        audit = open_audit(settings, clock)
        if audit is not None:
            stack.callback(audit.close)
        names = tuple(account.name for account in accounts)
        runtime = Runtime(settings, clock, store, upstreams, metrics=observer, audit=audit, accounts=names)
        if settings.team_file is not None:
            # Where accounts added later live: each in a task of its own, which enters its services' contexts and
            # leaves them at exit (a context entered in one task, a request's, cannot be left in another).
            holders = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(holders.cancel_scope.cancel)  # first at exit: then the group waits for them to close
            runtime._later = _opener(runtime, opening, holders)
        yield runtime


async def _hold(
    opening: Opening, found: Sequence[Account], upstreams: list[Upstream[Any]], *, task_status: TaskStatus[None]
) -> None:
    """Open `found`'s services in this task and keep them open until the runtime closes (this task is cancelled)."""
    async with AsyncExitStack() as own:
        await _open_accounts(replace(opening, stack=own), found, upstreams)
        task_status.started()
        await anyio.sleep_forever()


def _opener(runtime: Runtime, opening: Opening, holders: TaskGroup) -> Callable[[str], Coroutine[Any, Any, None]]:
    """How `runtime` opens an account added to the team file while it runs: read the file's `[accounts]` again,
    then open that one account exactly as at start (its seal, its secrets masked, its services held by a task)."""
    lock = anyio.Lock()  # two first calls of a new account open it once
    store = opening.store

    async def later(name: str) -> None:
        async with lock:
            if name in runtime.accounts:
                return
            try:
                found = team_accounts.from_team_file(runtime.settings.team_file, only=name)
            except ConfigurationError as exc:
                log.warning("account %s not opened: %s", name, exc)
                return
            if not found:
                return
            known_secrets.hold(*found[0].settings(runtime.settings).secrets)
            if isinstance(store, SealedStore):
                store.seal_also(seals(runtime.settings, found))
            try:
                await holders.start(functools.partial(_hold, opening, found, runtime.upstreams))
            except Exception as exc:  # its call then fails as one to an unconfigured account does
                log.warning("account %s not opened: %r", name, exc)
                return
            runtime.accounts = (*runtime.accounts, name)
            log.info("account %s opened: the team file routes to it since it was reloaded", name)

    return later


async def _open_accounts(opening: Opening, accounts: Sequence[Account], upstreams: list[Upstream[Any]]) -> None:
    """Open each team-file account's services with its own credentials, beside the default ones, under its name.

    Each room opens an account exactly as it opens the environment's, so the account's token, gates, quota
    book, caches and listings live under its own store prefix (its credential's fingerprint), shared with no
    other account. Two names with the same credentials share one set of services.
    """
    for account in accounts:
        own = replace(opening, settings=account.settings(opening.settings), name=account.name)
        for upstream, open_upstream, sealed in zip(upstreams, UPSTREAMS, SECRETS, strict=True):
            prefixes = sealed(own.settings)  # its store prefixes; none when the account has no such credential
            known = [upstream.services[key] for key in prefixes if key in upstream.services]
            if known:
                upstream.add(known[0], name=account.name)
            elif prefixes:
                opened = await open_upstream(own)
                if opened.default is not None:
                    upstream.add(opened.services[opened.default], name=account.name)
