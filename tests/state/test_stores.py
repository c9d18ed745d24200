"""Each state backend keeps the store's promises: atomic updates across instances, expiry, versioned documents."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import redis

from server.clock import FakeClock
from server.state import accounts
from server.state.fallback import FallbackStore
from server.state.memory import MemoryStore
from server.state.opening import StoreRefused, health, open_store
from server.state.redis import RedisStore
from server.state.sqlite import FILENAME, SQLiteStore
from server.state.store import Change, Doc, Store, StoreUnavailable
from tests.servers import Valkey, free_port

KINDS = ["memory", "sqlite", "redis"]
OpenStore = Callable[[], Store]


@pytest.fixture(scope="module")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Valkey]:
    server = Valkey(tmp_path_factory.mktemp("valkey")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"test:{request.node.name}:"


@pytest.fixture
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, valkey_server: Valkey, prefix: str
) -> OpenStore:
    """A factory of store instances over the same state, as separate processes would open them."""
    kind = request.param
    memory = MemoryStore(clock)

    def open_one() -> Store:
        if kind == "memory":
            return memory  # one process: the same instance
        if kind == "sqlite":
            return SQLiteStore.in_directory(tmp_path / "state", clock)
        return RedisStore(valkey_server.url, prefix=prefix)

    return open_one


def increment(doc: Doc | None) -> Change[int]:
    n = (doc or {}).get("n", 0) + 1
    return Change(n, {"n": n}, ttl_s=60)


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_concurrent_updates_from_several_instances_lose_nothing(stores: OpenStore) -> None:
    instances = [stores() for _ in range(3)]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for store in instances:
                for _ in range(40):
                    tg.start_soon(store.update, "counter", increment)
        assert await instances[0].get("counter") == {"n": 120}
    for store in instances:
        await store.aclose()


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_keep_writes_nothing_and_none_deletes(stores: OpenStore) -> None:
    store = stores()
    await store.update("k", increment)
    assert await store.update("k", lambda doc: Change("kept")) == "kept"
    assert await store.get("k") == {"n": 1}
    await store.update("k", lambda doc: Change(None, None))
    assert await store.get("k") is None
    await store.aclose()


@pytest.mark.parametrize("stores", ["memory", "sqlite"], indirect=True)
async def test_a_document_is_gone_when_its_ttl_runs_out(stores: OpenStore, clock: FakeClock) -> None:
    store = stores()
    await store.update("token", lambda doc: Change(None, {"t": 1}, ttl_s=10))
    clock.advance(9.9)
    assert await store.get("token") == {"t": 1}
    clock.advance(0.2)
    assert await store.get("token") is None
    await store.aclose()


async def test_redis_keys_live_under_the_prefix_with_a_ttl(valkey_server: Valkey, prefix: str) -> None:
    store = RedisStore(valkey_server.url, prefix=prefix)
    await store.update("token", lambda doc: Change(None, {"t": 1}, ttl_s=30))
    raw = redis.Redis(port=valkey_server.port)
    try:
        assert raw.keys(f"{prefix}*") == [f"{prefix}v1:token".encode()]  # the schema version in the key
        assert 0 < raw.pttl(f"{prefix}v1:token") <= 30_000
    finally:
        raw.close()
    await store.aclose()


@pytest.mark.parametrize("stores", ["sqlite", "redis"], indirect=True)
async def test_a_document_of_another_schema_version_reads_as_absent(
    stores: OpenStore, tmp_path: Path, valkey_server: Valkey, prefix: str
) -> None:
    store = stores()
    await store.update("gate", increment)  # creates the table or the connection
    foreign = json.dumps({"v": 99, "d": {"remaining": "lots"}})
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE docs SET value = ? WHERE key = 'gate'", (foreign,))
    else:
        raw = redis.Redis(port=valkey_server.port)
        raw.set(f"{prefix}v1:gate", foreign)
        raw.close()
    assert await store.get("gate") is None
    assert await store.update("gate", increment) == 1  # and is replaced, not misread
    await store.aclose()


async def test_the_database_is_readable_by_its_user_only(tmp_path: Path, clock: FakeClock) -> None:
    directory = tmp_path / "new" / "state"
    store = SQLiteStore.in_directory(directory, clock)
    await store.update("token", increment)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # a directory it makes is private
    for path in directory.iterdir():  # the database, its WAL and shared-memory files
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    await store.aclose()


async def test_a_directory_the_user_chose_keeps_its_mode_and_the_database_is_private(
    tmp_path: Path, clock: FakeClock
) -> None:
    directory = tmp_path / "shared-with-my-group"
    directory.mkdir()
    directory.chmod(0o2775)
    store = SQLiteStore.in_directory(directory, clock)
    await store.update("token", increment)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o2775
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    await store.aclose()


@asynccontextmanager
async def opened(**kw: object) -> AsyncIterator[Store]:
    store = await open_store(clock=FakeClock(), **kw)  # type: ignore[arg-type]
    try:
        yield store
    finally:
        await store.aclose()


async def test_an_unusable_state_directory_falls_back_to_memory_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    async with opened(kind="sqlite", state_dir=not_a_dir) as store:
        assert store.kind == "memory"
        assert store.degraded
        assert await store.update("k", increment) == 1
        report = await health(store)
        assert report.degraded
        assert str(not_a_dir) in (report.problem or "")
    assert [r.levelname for r in caplog.records if "FLASHSNAP_STATE_DIR" in r.getMessage()] == ["WARNING"]


async def test_a_corrupt_database_falls_back_to_memory(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"this is not an sqlite database" * 100)
    async with opened(kind="sqlite", state_dir=tmp_path) as store:
        assert store.kind == "memory"
        assert store.degraded
        assert await store.update("k", increment) == 1


async def test_an_unreachable_redis_is_refused_naming_the_host_but_not_the_password() -> None:
    port = free_port()
    with pytest.raises(StoreRefused) as refused:
        await open_store("redis", FakeClock(), redis_url=f"redis://user:s3cret-pw@127.0.0.1:{port}/0")
    assert f"127.0.0.1:{port}" in str(refused.value)
    assert "s3cret-pw" not in str(refused.value)


async def test_a_locked_database_degrades_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    sqlite = SQLiteStore(tmp_path / FILENAME, clock, busy_timeout_s=0.05)
    store = FallbackStore(sqlite, clock)
    assert await store.update("k", increment) == 1
    other = sqlite3.connect(sqlite.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    assert await store.update("k", increment) == 1  # went on with process-local state
    assert store.degraded
    assert await store.update("k", increment) == 2  # still local, and no second warning
    other.execute("ROLLBACK")
    other.close()
    clock.advance(5.1)
    assert await store.update("k", increment) == 2  # back on the shared store, where n was 1
    assert not store.degraded
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("going on with this process's own state" in m for m in messages) == 1
    assert sum("shared state is back" in m for m in messages) == 1
    await store.aclose()


async def test_a_write_waits_for_another_process_lock_off_the_event_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / FILENAME, FakeClock())
    assert await store.update("k", increment) == 1
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
    results: list[int] = []

    async def write() -> None:
        results.append(await store.update("k", increment))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await anyio.wait_all_tasks_blocked()  # the write waits for the lock in its worker thread...
            assert await store.get("k") == {"n": 1}  # ...while the event loop goes on, and reads too
            assert results == []
            other.execute("COMMIT")
    assert results == [2]
    other.close()
    await store.aclose()


class Stuck:
    """A shared store that fails slowly (as a locked database does after its busy timeout),
    or hangs until released: the fallback's primary, to show what it does meanwhile."""

    kind = "sqlite"
    shared = True
    degraded = False
    problem = None

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tries = 0
        self.release = anyio.Event()
        self.hang = False

    async def get(self, key: str) -> Doc | None:
        raise NotImplementedError

    async def update(self, key: str, mutate: object) -> object:
        self.tries += 1
        if self.hang:
            await self.release.wait()
        self.clock.advance(6)  # the attempt took longer than the retry interval
        raise StoreUnavailable("the state database is locked")

    async def ping(self) -> None: ...

    def describe(self) -> str:
        return "stuck.sqlite3"

    async def aclose(self) -> None: ...


async def test_a_slow_failure_is_not_retried_by_the_very_next_call() -> None:
    clock = FakeClock()
    primary = Stuck(clock)
    store = FallbackStore(primary, clock)  # type: ignore[arg-type]
    assert await store.update("k", increment) == 1
    assert await store.update("k", increment) == 2
    assert primary.tries == 1  # the retry interval counts from the failure, not from the attempt


async def test_while_one_call_tries_the_store_again_the_others_go_on_locally() -> None:
    clock = FakeClock()
    primary = Stuck(clock)
    store = FallbackStore(primary, clock)  # type: ignore[arg-type]
    await store.update("k", increment)
    clock.advance(5.1)
    primary.hang = True
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.update, "k", increment)  # tries the shared store, and hangs there
            await anyio.wait_all_tasks_blocked()
            assert primary.tries == 2
            assert await store.update("k", increment) == 2  # not stuck behind it
            assert primary.tries == 2
            primary.release.set()


async def test_the_account_index_forgets_accounts_nobody_opened_for_a_month_and_stays_bounded(
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock)
    now = clock.now()
    await accounts.register(store, accounts.Account("live:old", "neuralsnap", "api", now - accounts.KEEP_S - 1))
    for n in range(accounts.MAX_ACCOUNTS + 5):
        await accounts.register(store, accounts.Account(f"sandbox:{n}", "neuralsnap", "127.0.0.1", now + n))
    listed = await accounts.listed(store)
    assert len(listed) == accounts.MAX_ACCOUNTS
    assert "live:old" not in {a.key for a in listed}
    assert {a.key for a in listed} == {f"sandbox:{n}" for n in range(5, accounts.MAX_ACCOUNTS + 5)}  # newest kept


async def test_servers_keep_one_database_when_the_state_directory_is_deleted_under_them(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "cache" / "flashsnap-mcp"
    running = SQLiteStore.in_directory(directory, clock)
    assert await running.update("k", increment) == 1
    shutil.rmtree(tmp_path / "cache")  # the user clears the cache while the server runs
    later = SQLiteStore.in_directory(directory, clock)  # a server started afterwards
    assert await later.update("k", increment) == 1
    clock.advance(5)  # the running server looks at its file again
    assert await running.update("k", increment) == 2  # on the new database, with the later server
    assert await later.get("k") == {"n": 2}
    assert sum("removed or replaced" in r.getMessage() for r in caplog.records) == 1
    await running.aclose()
    await later.aclose()


@pytest.mark.parametrize("stores", ["sqlite", "redis"], indirect=True)
async def test_a_decision_is_never_made_on_what_another_process_has_since_changed(stores: OpenStore) -> None:
    """Redis decides first on the copy it last wrote: a write on a stale copy must lose, a keep must be
    confirmed on what the key holds now."""
    mine, other = stores(), stores()
    assert await mine.update("k", increment) == 1
    assert await other.update("k", increment) == 2  # behind my back

    def keep_if_one(doc: Doc | None) -> Change[str]:
        return Change("still one") if (doc or {}).get("n") == 1 else Change("moved on")

    assert await mine.update("k", keep_if_one) == "moved on"
    assert await mine.update("k", increment) == 3  # not 2: the write on my stale copy lost and was redone
    assert await other.get("k") == {"n": 3}
    await mine.aclose()
    await other.aclose()


async def test_opening_a_fresh_database_waits_for_another_process_instead_of_failing(tmp_path: Path) -> None:
    """Processes starting together on a new machine: one holds the new file while another switches it to WAL."""
    path = tmp_path / FILENAME
    other = sqlite3.connect(path, isolation_level=None)  # still in rollback-journal mode
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")  # another process is writing it, as at its creation
    store = SQLiteStore(path, FakeClock())
    results: list[int] = []

    async def write() -> None:
        results.append(await store.update("k", increment))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await anyio.wait_all_tasks_blocked()
            assert results == []  # waiting, not failed
            other.execute("COMMIT")
    assert results == [1]
    other.close()
    await store.aclose()
