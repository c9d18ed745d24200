"""`flashsnap-mcp forget`: delete what the servers sharing a state store learned, for one service or all.

Servers keep in the shared store what the upstreams told them (a token, a rate-limit window and its
penalty, the last quotas seen, generation slots). Should an upstream have said something wrong, or an
operator have changed the account (a restored quota, a new plan), this command forgets it at once
instead of waiting for each document to expire. Servers relearn from the next answers; the index of
accounts (what `flashsnap-mcp status` lists) is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import anyio

from server.cli.status import open_shared
from server.clock import Clock, SystemClock
from server.config import Settings
from server.errors import ConfigurationError
from server.observe import logs
from server.state import accounts, layout
from server.state.store import Change, Doc, Store

SERVICES = ("neuroflash", "neuralsnap", "all")
PROG = "flashsnap-mcp forget"
EPILOG = """what is forgotten, per account of the service (the store prefix live:<hash> or sandbox:<hash>):
  token      the neuroflash access token, its fetch lease and a recent failure
  gate       the rate-limit window (limit, remaining, reset), a 429 penalty, sends in flight
  quota:*    the last quotas seen per workspace, and the words spent since
  slots:*    the generation streams held per workspace
  and any other document kept under the account's prefix.
With `all`, documents of accounts no longer in the index go too. Running servers relearn from the
next answers (a token a server holds in memory is used until it expires). The state store is the
one the servers use: FLASHSNAP_STATE, FLASHSNAP_STATE_DIR, FLASHSNAP_REDIS_URL. The memory store
cannot be reached from here, so it is refused.

examples:
  flashsnap-mcp forget neuralsnap          list what would be forgotten, ask before deleting
  flashsnap-mcp forget all --yes           delete it without asking (scripts)"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Forget what the servers sharing this state store learned about one service's accounts, or "
        "all: tokens, rate-limit windows and penalties, quotas, generation slots.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("service", choices=SERVICES, help="whose learned state to forget")
    parser.add_argument("--yes", action="store_true", help="delete without asking")
    return parser.parse_args(argv)


async def learned(store: Store, service: str) -> list[str]:
    """The keys of every document the servers learned about `service`'s accounts ("all": every account)."""
    found: set[str] = set()
    for account in await accounts.listed(store):
        if service in ("all", account.service):
            found.update(await store.keys(layout.AccountKeys(account.key).everything))
    if service == "all":
        for namespace in layout.NAMESPACES:
            found.update(await store.keys(f"{namespace}:"))
    if service in ("all", "neuroflash"):  # the chat path and model list learnt per API URL
        for namespace in layout.ROUTE_NAMESPACES:
            found.update(await store.keys(f"{namespace}:"))
    return sorted(found)


def _delete(doc: Doc | None) -> Change[None]:
    return Change(None, None)


async def forget(store: Store, keys: Sequence[str]) -> None:
    """Delete the documents at `keys`, each in one atomic update."""
    for key in keys:
        await store.update(key, _delete)


async def run(args: argparse.Namespace, settings: Settings, clock: Clock | None = None) -> int:
    """List, confirm and delete; 0 when done (or nothing to forget), 1 when nothing was deleted.

    Raises:
        ConfigurationError: a Redis store was asked for and does not answer.
    """
    store = await open_shared(settings, clock or SystemClock(), PROG)
    if store is None:
        return 1
    try:
        keys = await learned(store, args.service)
        where = f"{store.kind} ({store.describe()})"
        if not keys:
            print(f"{PROG}: nothing learned about {args.service} in {where}")  # noqa: T201
            return 0
        print(f"{PROG}: {len(keys)} documents learned about {args.service} in {where}:")  # noqa: T201
        for key in keys:
            print(f"  {key}")  # noqa: T201
        if not args.yes:
            if not sys.stdin.isatty():
                print(f"{PROG}: nothing forgotten; pass --yes to delete them", file=sys.stderr)  # noqa: T201
                return 1
            answer = await anyio.to_thread.run_sync(input, "Forget them? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print(f"{PROG}: nothing forgotten")  # noqa: T201
                return 1
        await forget(store, keys)
        print(f"{PROG}: forgot {len(keys)} documents")  # noqa: T201
        return 0
    finally:
        await store.aclose()


def main(argv: Sequence[str]) -> None:
    """Run `flashsnap-mcp forget` and exit with its status.

    Raises:
        SystemExit: always: 0 when done or nothing was learned, 1 when nothing was deleted (refused, not
            confirmed, no shared state), 2 for a configuration error.
    """
    args = parse_args(argv)
    logs.configure(os.environ.get("FLASHSNAP_LOG_LEVEL", "WARNING").upper())
    try:
        settings = Settings.from_env(os.environ)
        code = anyio.run(run, args, settings)
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
    except (KeyboardInterrupt, EOFError):
        code = 1
    raise SystemExit(code)
