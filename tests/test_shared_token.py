"""Two servers on one SQLite store share one neuroflash token: its lease, its failures, its revocation.

Each `connect()` opens a server with its own runtime and its own store connection on the test's
state directory, as a second process would; a fake clock makes lease expiry and token lifetime exact.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio

from server.clock import FakeClock
from server.config import Settings
from server.credentials.lease import Mine, claim
from server.runtime import seals
from server.sandbox import Emulator
from server.sandbox.records import Fault
from server.state.sealing import SealedStore
from server.state.sqlite import FILENAME, SQLiteStore
from server.upstream.opening import account_key
from tests.conftest import Connect
from tests.results import data, error


def token_key(emulator: Emulator) -> str:
    settings = Settings.from_env(emulator.environment())
    assert settings.neuroflash_client_id is not None
    return account_key(settings, "neuroflash", settings.neuroflash_token_url, settings.neuroflash_client_id) + ":token"


async def test_a_401_invalidates_that_token_for_every_server(connect: Connect, emulator: Emulator) -> None:
    with anyio.fail_after(30):
        async with connect() as first, connect() as second:
            data(await first.call_tool("check_quota", {}))
            emulator.state.revoke_tokens()  # the upstream no longer takes the shared token
            data(await second.call_tool("check_quota", {}))  # 401 → one refresh → replay
            data(await first.call_tool("check_quota", {}))  # takes the new token: no 401, no fetch
    assert emulator.state.count("token") == 2
    assert emulator.state.count_status("quotas", 401) == 1


async def test_a_server_that_died_holding_the_lease_delays_the_others_by_seconds(
    connect: Connect, emulator: Emulator, clock: FakeClock, state_dir: Path
) -> None:
    # Another server: it seals what it keeps with the same credentials, as every server of the account does.
    dead = SealedStore(SQLiteStore(state_dir / FILENAME, clock), seals(Settings.from_env(emulator.environment())))
    await dead.update(token_key(emulator), lambda doc: claim(doc, clock.now(), owner="dead", fresh_for=0, lease_s=5))
    await dead.aclose()  # and never fetches, releases or renews
    answers: list[object] = []
    with anyio.fail_after(30):
        async with connect() as client, anyio.create_task_group() as tg:

            async def call() -> None:
                answers.append(data(await client.call_tool("check_quota", {})))

            tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            assert answers == []  # waiting for the dead server's fetch...
            assert emulator.state.count("token") == 0
            clock.advance(5)  # ...until its lease runs out; then it fetches itself
    assert len(answers) == 1
    assert emulator.state.count("token") == 1


async def test_a_rejected_token_request_answers_the_other_servers_too(connect: Connect, emulator: Emulator) -> None:
    emulator.state.inject("token", Fault(status=401, times=5))
    with anyio.fail_after(30):
        async with connect() as first, connect() as second:
            assert error(await first.call_tool("check_quota", {}))["code"] == "credentials_rejected"
            assert error(await second.call_tool("check_quota", {}))["code"] == "credentials_rejected"
    assert emulator.state.count("token") == 1  # the second server took the first one's answer


async def test_the_token_is_stored_no_longer_than_it_is_valid(
    connect: Connect, emulator: Emulator, clock: FakeClock, state_dir: Path
) -> None:
    with anyio.fail_after(30):
        async with connect() as client:
            data(await client.call_tool("check_quota", {}))
            with sqlite3.connect(state_dir / FILENAME) as db:
                (expires_at,) = db.execute(
                    "SELECT expires_at FROM docs WHERE key = ?", (token_key(emulator),)
                ).fetchone()
            assert expires_at <= clock.now() + emulator.state.token_ttl_s
            clock.advance(emulator.state.token_ttl_s + 1)
            store = SQLiteStore(state_dir / FILENAME, clock)
            assert await store.get(token_key(emulator)) is None
            await store.aclose()


def test_a_token_document_of_another_shape_reads_as_absent() -> None:
    """Written by a version with the same schema number but other fields: a fresh fetch, not a crash."""
    docs: tuple[dict[str, Any], ...] = (
        {"token": {"value": "nf_at_x", "expires_at": 2e9}},  # no lifetime
        {"token": {"value": 7, "expires_at": 2e9, "lifetime": 60}},
        {"lease": {"until": 2e9}},  # no owner
        {"failure": {"kind": "rejected", "until": "soon"}},
        {"token": "nf_at_x", "lease": [], "failure": None},
    )
    for doc in docs:
        result = claim(doc, 1e9, owner="me", fresh_for=30, lease_s=5).result
        assert isinstance(result, Mine), doc
