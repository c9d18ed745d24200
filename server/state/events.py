"""The change events replicas pass each other: a listing change names the upstream account it happened in.

A snapshot saved on one account changes only that account's listing, so its notice goes only to the sessions and
listeners of that account (a principal's `account` in the team file, else the environment's default). An event
without an account (another kind, or one a replica of an older version published) still reaches everyone: it
carries no content, and a needless re-listing costs one read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from server import context

DEFAULT = ""  # the environment's default account (a principal the team file routes nowhere, or no principal)
MAX_ACCOUNT = 128  # an account name from another replica is one of the team file's names: short
_KINDS: dict[str, type[ToolsListChanged | PromptsListChanged | ResourcesListChanged]] = {
    "tools_list_changed": ToolsListChanged,
    "prompts_list_changed": PromptsListChanged,
    "resources_list_changed": ResourcesListChanged,
}
# What a replica of this server publishes; anything else on the channel was not sent by one, and is skipped.
HEARD = frozenset({"resources_list_changed"})


@dataclass(frozen=True)
class AccountListChanged(ResourcesListChanged):
    """The resource listing changed within one account (the SDK's listen streams see a `ResourcesListChanged`)."""

    account: str = DEFAULT


def caller_account() -> str:
    """The account the caller's calls are routed to: its team-file account, else the default one."""
    caller = context.principal()
    return caller.account if caller is not None and caller.account is not None else DEFAULT


def reaches(event: ServerEvent, account: str) -> bool:
    """Whether `event` is for a session or listener of `account`."""
    return not isinstance(event, AccountListChanged) or event.account == account


class AccountBus:
    """A `SubscriptionBus` whose listeners each hear only their own account's listing changes.

    The SDK subscribes a `subscriptions/listen` stream inside that request, so the caller settled for it
    (`context.principal()`) is the listener's account.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register `listener` for the events of the subscribing caller's account; returns its unsubscribe."""
        account = caller_account()

        def deliver(event: ServerEvent) -> None:
            if reaches(event, account):
                listener(event)

        unsubscribe: Callable[[], None] = self.inner.subscribe(deliver)
        return unsubscribe

    async def publish(self, event: ServerEvent) -> None:
        """Publish `event` on the bus underneath (this process, and the other replicas where it is shared)."""
        await self.inner.publish(event)


def encode(event: ServerEvent, origin: str) -> str:
    """An event as it travels between replicas."""
    if isinstance(event, ResourceUpdated):
        return json.dumps({"origin": origin, "kind": "resource_updated", "uri": event.uri})
    kind = next(name for name, cls in _KINDS.items() if isinstance(event, cls))
    message: dict[str, str] = {"origin": origin, "kind": kind}
    if isinstance(event, AccountListChanged):
        message["account"] = event.account
    return json.dumps(message)


def decode(raw: str | bytes) -> tuple[str, ServerEvent] | None:
    """Who published an event, and the event; None for a message that is not one (it is skipped)."""
    try:
        message: Any = json.loads(raw)  # bytes: invalid UTF-8 is a ValueError here, not a dead subscription
        origin, kind = str(message["origin"]), message["kind"]
        if kind not in HEARD:
            return None
        account = message.get("account")
        if account is None:
            return origin, _KINDS[kind]()
        if not isinstance(account, str) or len(account) > MAX_ACCOUNT:
            return None
        return origin, AccountListChanged(account=account)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):  # RecursionError: JSON nested deep
        return None
