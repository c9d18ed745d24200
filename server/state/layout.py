"""What the shared store holds: every key's name is made here, and each document's format has one owner.

All keys live under one account prefix per credential, `live:<hash>` or `sandbox:<hash>`
(the hash of service, API URL and credential: never the secret itself), except the index:

- `accounts`: which service each account prefix is (format: `server/state/accounts.py`; 30 days unseen).
- `consent:<nonce>`: a user's yes to one question asked in an `input_required` round, once used, so the same
  sealed answer cannot carry out a second call (`server/tooling/consent.py`; 10 min, the answer's lifetime).
- `principal:<name>`: each principal's tool calls by outcome and the last one's time, the team file's names
  else `other` (`server/auth/activity.py`; 30 days unseen).
- `<account>:token`: the token, its fetch lease, a recent failure (`server/credentials/lease.py`; its validity).
- `<account>:gate`: the rate-limit window, 429 penalty, sends in flight (`server/scheduler/window.py`; the reset).
- `<account>:quota:<workspace>`: the last quotas seen, words spent since (`server/neuroflash/quota.py`; 30 s).
- `<account>:slots:<workspace>`: generation streams held as leases (`server/scheduler/slots.py`; the last lease).
- `<account>:voice:<workspace>:<voice>`: a brand voice's system prompt (`server/neuroflash/voices.py`; 10 min).
- `<account>:budget:<principal>`: a principal's words, crystallize tokens and searches spent this day and month,
  and the estimates it holds while calls run (`server/auth/budgets.py`; to the month's end).
- `<account>:shares:<workspace>`: the scarcity guard's shares of a workspace's last words, per period, fixed
  when they were first scarce (`server/auth/shares.py`; to the month's end).
- `<account>:listing:<kind>`: workspaces, brand voices, recent snapshots, for resource listings and
  completions (`server/features/resources.py`; 5 s).
- `<routes>:voice`: per API URL, which brand-voice prompt route answered (`server/neuroflash/routes.py`; 6 h).
- `<routes>:chat`, `<routes>:models`: per API URL (`routes_key`), the neuroflash chat path that answered and
  whether the model list's route is missing (`server/neuroflash/routes.py`; 6 h and 1 h, forgotten at once
  when the route answers otherwise).

Everything a server learned about an account lives under `<account>:` (`AccountKeys.everything`), so
`flashsnap-mcp forget` (`server/cli/forget.py`) deletes an account's documents by that prefix, including
kinds added later.

Every document whose content steers a request is sealed under the secret of the account it is about
(`server/state/sealing.py`; `sealing_scope` says under which): a store writer cannot plant one. Left plain:
the accounts index (names and hosts, for `status` and `forget`; it steers no request) and the scheduler's
gate and slots, which store-side scripts read and which bound every time and count they hold instead.

Readers (the servers and `flashsnap-mcp status`) go through the owner's parser, so a format is
written once. Backends add their own prefix and schema version (`FLASHSNAP_REDIS_PREFIX` + `v1:`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

NAMESPACES = ("live", "sandbox")  # the first part of every account prefix


PRINCIPALS = "principal:"  # the prefix of every principal's activity document


def principal_key(label: str) -> str:
    """The key of what one principal did (`server/auth/activity.py`): its label, the team file's name or "other"."""
    return f"{PRINCIPALS}{label}"


def consent_key(nonce: str) -> str:
    """The key that marks one answered question used (any account: a question may be about either upstream)."""
    return f"consent:{nonce}"


def account_key(service: str, url: str, credential: str, *, sandbox: bool) -> str:
    """The store prefix of one credential: a hash of what identifies it, never the secret itself.

    Sandbox state lives in a namespace of its own, so it never mixes with a real account's.
    """
    digest = hashlib.sha256("\0".join((service, url, credential)).encode()).hexdigest()[:24]
    return f"{NAMESPACES[1] if sandbox else NAMESPACES[0]}:{digest}"


CONSENT_SCOPE = "consent"  # the sealing scope of the consent marks: the request state's secret, any account


def sealing_scope(key: str) -> str | None:
    """Under whose secret the document at `key` is sealed: an account or routes prefix, `CONSENT_SCOPE`, or
    None for the documents left plain (the index and the principals' counts; the scheduler's, bounded by their
    readers instead)."""
    if key == ACCOUNTS_KEY or key.startswith(PRINCIPALS):
        # Counts `status` shows, steering no request: plain (a planted one can only misreport, and ages out).
        return None
    if key.startswith("consent:"):
        return CONSENT_SCOPE
    namespace, _, rest = key.partition(":")
    digest, _, kind = rest.partition(":")
    if namespace in NAMESPACES and kind.split(":", 1)[0] in SCHEDULING_KINDS:
        return None
    return f"{namespace}:{digest}"


ACCOUNTS_KEY = "accounts"  # the index (format: `server/state/accounts.py`)
SCHEDULING_KINDS = frozenset({"gate", "slots"})  # an account's documents the scheduler owns, left plain


def routes_key(service: str, api_url: str, *, sandbox: bool) -> str:
    """The store prefix of what is learned about an API URL's routes, shared by every credential that uses it."""
    digest = hashlib.sha256("\0".join(("routes", service, api_url)).encode()).hexdigest()[:24]
    return f"{ROUTE_NAMESPACES[1] if sandbox else ROUTE_NAMESPACES[0]}:{digest}"


ROUTE_NAMESPACES = ("live-routes", "sandbox-routes")  # the first part of every route document's key (neuroflash)


@dataclass(frozen=True)
class RouteKeys:
    """The keys of one API URL's route documents."""

    routes: str

    @property
    def chat(self) -> str:
        return f"{self.routes}:chat"

    @property
    def models(self) -> str:
        return f"{self.routes}:models"

    @property
    def voice(self) -> str:
        return f"{self.routes}:voice"


@dataclass(frozen=True)
class AccountKeys:
    """The keys of one account's documents."""

    account: str

    @property
    def everything(self) -> str:
        """The prefix of every document of the account: what it learned, whatever the kind."""
        return f"{self.account}:"

    @property
    def token(self) -> str:
        return f"{self.account}:token"

    @property
    def gate(self) -> str:
        return f"{self.account}:gate"

    @property
    def profile(self) -> str:
        """NeuralSnap's plan and limits, as `flashsnap-mcp check` last read them (`server/neuralsnap/profile.py`)."""
        return f"{self.account}:profile"

    @property
    def quota(self) -> str:
        """The prefix of the quota documents; one per workspace follows it after a colon."""
        return f"{self.account}:quota"

    def voice(self, workspace_id: str, voice_id: str) -> str:
        """The key of one brand voice's prompt, in one workspace."""
        return f"{self.account}:voice:{workspace_id}:{voice_id}"

    def listing(self, kind: str) -> str:
        """A listing kept a few seconds for resources and completions (`server/features/resources.py`; 5 s)."""
        return f"{self.account}:listing:{kind}"

    @property
    def budgets(self) -> str:
        """The prefix of the principals' budget documents; one per principal label follows it."""
        return f"{self.account}:budget:"

    def budget(self, label: str) -> str:
        """What one principal spent and holds of this account's stocks (`server/auth/budgets.py`)."""
        return f"{self.budgets}{label}"

    def shares(self, workspace_id: str) -> str:
        """The scarcity guard's shares of one workspace's words (`server/auth/shares.py`)."""
        return f"{self.account}:shares:{workspace_id}"

    @property
    def slots(self) -> str:
        """The prefix of the generation-slot documents; one per workspace follows it after a colon."""
        return f"{self.account}:slots"


def workspace_of(key: str) -> str:
    """The workspace a per-workspace key (quota, slots) is about."""
    return key.rsplit(":", 1)[-1]
