"""What every upstream room opens the same way: the account key, the gate, the scheduled HTTP client, the index.

Each room (`server/neuroflash/opening.py`, `server/neuralsnap/opening.py`) opens its own services with
these parts and hands the runtime an `Upstream`: its services by account, the default (the environment's
credentials) first. The team file's accounts (`server/upstream/accounts.py`) sit beside it under their names,
each with its own credentials, token, gate and quota book.
"""

from __future__ import annotations

import logging
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import httpx2

from server import __version__
from server.clock import Clock
from server.config import Settings
from server.errors import MissingCredential
from server.httpio import KEEPALIVE_EXPIRY_S, tls_context
from server.observe.metrics import Observer, fingerprint
from server.scheduler.gate import Gate
from server.scheduler.transport import ScheduledTransport
from server.state import accounts, layout
from server.state.opening import default_state_dir
from server.state.store import Store

log = logging.getLogger(__name__)
USER_AGENT = f"flashsnap-mcp/{__version__}"


class Service(Protocol):
    """What the runtime and its readers ask of any upstream's service: which account it is, and its gate."""

    @property
    def account(self) -> layout.AccountKeys: ...

    @property
    def gate(self) -> Gate: ...


S = TypeVar("S", bound=Service)


@dataclass
class Upstream(Generic[S]):
    """One upstream's services by account (its store prefix), the default first; none when not configured."""

    kind: type[S]  # the service class: how the runtime finds this upstream
    title: str  # as a missing credential names the service, e.g. "NeuralSnap"
    needs: str  # the variables to set when it has no account, e.g. "NEURALSNAP_API_KEY"
    services: dict[str, S] = field(default_factory=dict)  # by store prefix, every account's
    default: str | None = None  # the store prefix of the environment's account; None: it has none
    named: dict[str, str] = field(default_factory=dict)  # the team file's account name -> its store prefix

    def add(self, service: S, name: str | None = None) -> None:
        """Offer `service` under its account: the team file's account `name`, else the default one."""
        key = service.account.account
        self.services.setdefault(key, service)  # the same credentials under two names: one set of services
        if name is None:
            self.default = key
        else:
            self.named[name] = key

    def service(self, account: str | None = None) -> S:
        """The service of `account` (a store prefix), or the default one.

        Raises:
            MissingCredential: no account is configured, or none is `account`.
        """
        if account is None:
            if self.default is not None:
                return self.services[self.default]
        elif account in self.services:
            return self.services[account]
        raise MissingCredential(self.needs, self.title if account is None else f"{self.title} account {account}")

    def named_service(self, name: str) -> S:
        """The service of the team file's account `name`.

        Raises:
            MissingCredential: that account gives no credential for this upstream (the error names the account).
        """
        if name in self.named:
            return self.services[self.named[name]]
        keys = " and ".join(f"{variable.lower()}_env" for variable in self.needs.split(" and "))
        raise MissingCredential(f"{keys} (or *_file) in the team file's [accounts.{name}]",
                                f"{self.title} for account {name}")  # fmt: skip


def account_key(settings: Settings, service: str, url: str, credential: str) -> str:
    """The state-store prefix of one credential (see server/state/layout.py).

    The sandbox's emulator listens on a new port at each start, but its world lives in the state
    directory: that directory (on this host) identifies the sandbox account, not the URL.
    """
    if settings.sandbox:
        url = f"sandbox-world:{socket.gethostname()}:{settings.state_dir or default_state_dir()}"
    return layout.account_key(service, url, credential, sandbox=settings.sandbox)


@dataclass
class Opening:
    """What a room opens its services with; everything it enters closes with `stack`, at the runtime's exit."""

    settings: Settings
    clock: Clock
    store: Store
    stack: AsyncExitStack
    observer: Observer
    name: str | None = None  # the team file's account these credentials are ([accounts.<name>]); None: the default

    async def gate(self, scope: str, keys: layout.AccountKeys, *, probe_first: bool) -> Gate:
        """The rate-limit gate of one credential, shared through the store by every process using it."""
        return await self.stack.enter_async_context(
            Gate(scope, self.clock, store=self.store, key=keys.gate, probe_first=probe_first,
                 flight_ttl_s=self.settings.timeout_s + 10, observer=self.observer)
        )  # fmt: skip

    async def http_client(
        self, base_url: str, auth: httpx2.Auth | None = None, gate: Gate | None = None
    ) -> httpx2.AsyncClient:
        """An HTTP client for `base_url`; with `gate`, each request waits there (the scheduling transport)."""
        settings = self.settings
        transport = None
        if gate is not None:
            inner = httpx2.AsyncHTTPTransport(retries=0, verify=tls_context())
            transport = ScheduledTransport(inner, gate, self.clock, observer=self.observer)
        client = httpx2.AsyncClient(
            base_url=base_url,
            auth=auth,
            transport=transport,
            timeout=httpx2.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s)),
            limits=httpx2.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY_S
            ),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
            verify=tls_context(),
        )
        return await self.stack.enter_async_context(client)

    async def register(self, account: str, service: str, api_url: str) -> None:
        """List the account for `flashsnap-mcp status`, and name its credential in the metrics (a hash, no secret)."""
        self.observer.credential(service, fingerprint(account))
        entry = accounts.Account(account, service, httpx2.URL(api_url).host, self.clock.now(), name=self.name)
        await accounts.register(self.store, entry)
