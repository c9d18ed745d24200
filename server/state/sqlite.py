"""State shared by every process of one user on one machine: an SQLite database in the state directory.

The directory is made 0700 and the database 0600 (SQLite gives its WAL and shared-memory files
the database's permissions), so a token kept there is readable by its user only. WAL lets
readers go on while one process writes; writes are short `BEGIN IMMEDIATE` transactions that
wait for each other up to a busy timeout.

The event loop never waits on the disk or on another process's lock: a call first tries a
connection that gives up at once when the database is locked and never checkpoints (so it only
reads, or appends a page to the WAL, in microseconds); when it meets a lock it goes to a worker
thread, whose connection waits up to the busy timeout. Checkpoints and sweeps run in that thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from server.clock import Clock
from server.state.files import open_private_database
from server.state.store import KEEP, SCHEMA, Doc, Mutation, R, StoreUnavailable, decode, encode

T = TypeVar("T")
log = logging.getLogger(__name__)
FILENAME = f"state-v{SCHEMA}.sqlite3"  # another schema version keeps its own file and never misreads ours
CHECK_FILE_EVERY_S = 5.0  # how often a store makes sure its file is still the one at its path
PURGE_EVERY = 500  # writes between sweeps of expired documents (and checkpoints of the WAL)


class _Locked(Exception):
    """Another connection holds the lock this call needs."""


class SQLiteStore:
    kind = "sqlite"
    shared = True
    degraded = False
    problem: str | None = None

    def __init__(self, path: Path, clock: Clock, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._db: sqlite3.Connection | None = None  # the worker thread's: waits for locks, checkpoints
        self._quick: sqlite3.Connection | None = None  # the event loop's: never waits, never checkpoints
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._writes = 0
        self._file: tuple[int, int] | None = None  # (device, inode) of the database this store opened
        self._check_file_at = 0.0

    @classmethod
    def in_directory(cls, directory: Path, clock: Clock) -> SQLiteStore:
        return cls(directory / FILENAME, clock)

    # --- the interface --------------------------------------------------------------------------

    async def get(self, key: str) -> Doc | None:
        return await self._run(lambda db: self._select(db, key))

    async def update(self, key: str, mutate: Mutation[R]) -> R:
        return await self._run(lambda db: self._update(db, key, mutate))

    async def keys(self, prefix: str) -> list[str]:
        # substr, not LIKE: a prefix may hold % or _.
        query = "SELECT key FROM docs WHERE substr(key, 1, ?) = ? AND expires_at > ? ORDER BY key"
        rows = await self._run(lambda db: db.execute(query, (len(prefix), prefix, self._clock.now())).fetchall())
        return [str(row[0]) for row in rows]

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT count(*) FROM docs").fetchone())

    def describe(self) -> str:
        return str(self.path)

    async def aclose(self) -> None:
        self._close_quick()
        await self._run_unlocked(self._close)

    # --- on the event loop, when nothing is locked --------------------------------------------

    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        await self._reopen_if_replaced()
        writes = self._writes
        result = await self._either(op)
        if self._writes // PURGE_EVERY != writes // PURGE_EVERY:
            with contextlib.suppress(StoreUnavailable):  # housekeeping: never the call's failure
                await self._run_unlocked(lambda: self._sweep(self._connection()))
        return result

    async def _reopen_if_replaced(self) -> None:
        """A user who clears the cache directory under running servers must not split them: servers
        started later would make a new database while these went on with the deleted one."""
        now = self._clock.now()
        if self._file is None or now < self._check_file_at:
            return
        self._check_file_at = now + CHECK_FILE_EVERY_S
        try:
            found = os.stat(self.path)
            same = (found.st_dev, found.st_ino) == self._file
        except OSError:
            same = False
        if not same:
            log.warning("the state database %s was removed or replaced; opening it again", self.path)
            self._close_quick()
            await self._run_unlocked(self._close)

    async def _either(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._quick is not None:
            try:
                return self._on_loop(op, self._quick)
            except _Locked:
                pass  # another process is writing: wait for it in the worker thread
        result = await self._run_unlocked(lambda: op(self._connection()))
        if self._quick is None:
            self._quick = await self._run_unlocked(self._connect_quick)
        return result

    def _on_loop(self, op: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
        try:
            return op(db)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _Locked from None
            self._close_quick()
            raise StoreUnavailable(f"the state database {self.path} failed: {exc}") from None
        except sqlite3.Error as exc:
            self._close_quick()
            raise StoreUnavailable(f"the state database {self.path} failed: {exc}") from None

    def _close_quick(self) -> None:
        if self._quick is not None:
            with contextlib.suppress(sqlite3.Error):
                self._quick.close()
            self._quick = None

    # --- in the worker thread -------------------------------------------------------------------

    def _connect_quick(self) -> sqlite3.Connection | None:
        try:
            db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints write back the WAL: the thread's job
        except sqlite3.Error:
            return None  # the thread's connection serves alone
        return db

    def _sweep(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM docs WHERE expires_at <= ?", (self._clock.now(),))
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _run_unlocked(self, op: Callable[[], T]) -> T:
        def guarded() -> T:
            with self._lock:
                try:
                    return op()
                except sqlite3.Error as exc:
                    self._close()  # a fresh connection next time: the file may have been fixed or replaced
                    raise StoreUnavailable(f"the state database {self.path} failed: {exc}") from None
                except OSError as exc:
                    raise StoreUnavailable(f"the state directory {self.path.parent} is unusable: {exc}") from None

        return await anyio.to_thread.run_sync(guarded, limiter=self._limiter)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _connect(self) -> sqlite3.Connection:
        db = open_private_database(self.path, self._busy_timeout_s)
        found = os.stat(self.path)
        self._file = (found.st_dev, found.st_ino)
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS docs (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL)"
            )
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _select(self, db: sqlite3.Connection, key: str) -> Doc | None:
        row = db.execute("SELECT value FROM docs WHERE key = ? AND expires_at > ?", (key, self._clock.now())).fetchone()
        return decode(row[0]) if row is not None else None

    def _update(self, db: sqlite3.Connection, key: str, mutate: Mutation[R]) -> R:
        # Optimistic first: most updates decide to keep the document and need no write lock at all.
        change = mutate(self._select(db, key))
        if change.doc is KEEP:
            return change.result
        db.execute("BEGIN IMMEDIATE")
        try:
            change = mutate(self._select(db, key))  # again, under the lock: someone may have written since
            now = self._clock.now()
            if change.doc is None:
                db.execute("DELETE FROM docs WHERE key = ?", (key,))
            elif change.doc is not KEEP:
                assert isinstance(change.doc, dict)
                db.execute(
                    "INSERT INTO docs (key, value, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                    (key, encode(change.doc), now + change.ttl_s),
                )
            db.execute("COMMIT")
            self._writes += 1
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return change.result
