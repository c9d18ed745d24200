"""The sandbox's world on disk: one SQLite file every `--sandbox` process of a user shares, so they are one upstream.

What an upstream remembers lives here: issued tokens, quota usage, rate-limit windows and
snapshots. What belongs to one emulator stays in its process: counters, faults, latency, the
request log, and the seed (workspaces and their starting quotas), which each process knows the
same and writes only where the world has no row yet, so a reset world fills itself in again.

The file sits in the state directory under a name of its own, beside (never inside) the
server's state. It is made 0600 in a 0700 directory; WAL lets readers go on while a process
writes; each request's read-modify-write is one short `BEGIN IMMEDIATE` transaction that waits
for other processes up to a busy timeout. A file of another schema version, or not ours, is
refused rather than misread. The emulator serves from a thread of its own, so these calls are
plain synchronous sqlite3; the owner (EmulatorState) serializes them under its lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Final

from server.sandbox.records import Quota
from server.state.files import open_private_database

SCHEMA: Final = 1
FILENAME: Final = f"sandbox-world-v{SCHEMA}.sqlite3"
APPLICATION_ID: Final = 0x46534E57  # "FSNW": marks the file as a flashsnap sandbox world
SIDECARS: Final = ("-wal", "-shm", "-journal")

TABLES: Final = (
    "CREATE TABLE tokens (token TEXT PRIMARY KEY, client_id TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE quotas (workspace_id TEXT NOT NULL, usage_type TEXT NOT NULL, value TEXT NOT NULL, "
    "PRIMARY KEY (workspace_id, usage_type))",
    "CREATE TABLE windows (key TEXT PRIMARY KEY, reset_at REAL NOT NULL, used INTEGER NOT NULL)",
    "CREATE TABLE snapshots (id TEXT PRIMARY KEY, brain_id TEXT NOT NULL, created_at TEXT NOT NULL, "
    "body TEXT NOT NULL)",
    "CREATE INDEX snapshots_by_brain ON snapshots (brain_id, created_at)",
)


class WorldUnusable(Exception):
    """The world file cannot be used: the directory is not writable, the file is corrupt or not ours."""


def world_file(state_dir: Path) -> Path:
    return state_dir / FILENAME


class WorldFile:
    """An open world file; every method is one transaction (callers serialize calls in the process)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0, reset: bool = False) -> None:
        """Open (or create) the world at `path`; `reset` empties it first, or replaces it if it is unreadable.

        Raises:
            WorldUnusable: the file or its directory cannot be used (the message says why).
        """  # noqa: DOC501 - the inner re-raise of a DatabaseError is caught and turned into WorldUnusable
        self.path = path
        try:
            try:
                self._db = _connect(path, busy_timeout_s)
            except (sqlite3.DatabaseError, WorldUnusable) as exc:
                if not (reset and _unreadable(exc)):
                    raise
                forget(path)
                self._db = _connect(path, busy_timeout_s)
            if reset:
                self._empty()
        except (sqlite3.Error, OSError, WorldUnusable) as exc:
            raise WorldUnusable(f"the sandbox world {path} is unusable: {exc}") from None

    def _empty(self) -> None:
        # Emptied in place rather than deleted, so processes that have it open start afresh too.
        with self._write() as db:
            for table in ("tokens", "quotas", "windows", "snapshots"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - a fixed list of our own tables

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    # --- tokens ---------------------------------------------------------------------------------

    def add_token(self, token: str, client_id: str, expires_at: float, now: float) -> None:
        with self._write() as db:
            db.execute("DELETE FROM tokens WHERE expires_at <= ?", (now,))  # forget expired ones
            db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (token, client_id, expires_at))

    def token_expiry(self, token: str) -> float | None:
        row = self._db.execute("SELECT expires_at FROM tokens WHERE token = ?", (token,)).fetchone()
        return float(row[0]) if row is not None else None

    def expire_tokens(self, now: float) -> None:
        with self._write() as db:
            db.execute("UPDATE tokens SET expires_at = ?", (now - 1,))

    def revoke_tokens(self) -> None:
        with self._write() as db:
            db.execute("DELETE FROM tokens")

    # --- quotas ---------------------------------------------------------------------------------

    def change_quota(self, workspace_id: str, seed: Quota, change: Callable[[Quota], None]) -> Quota:
        """Read a quota (the seed if the world has none yet), let `change` edit it, write it back: one step."""
        with self._write() as db:
            key = (workspace_id, seed.usage_type)
            row = db.execute("SELECT value FROM quotas WHERE workspace_id = ? AND usage_type = ?", key).fetchone()
            quota = _quota_from(json.loads(row[0])) if row is not None else dataclasses.replace(seed)
            before = dataclasses.asdict(quota)
            change(quota)
            if row is None or dataclasses.asdict(quota) != before:
                db.execute(
                    "INSERT INTO quotas VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
                    (*key, json.dumps(dataclasses.asdict(quota), default=date.isoformat)),
                )
            return quota

    # --- rate-limit windows ---------------------------------------------------------------------

    def spend_window(self, key: str, reset_at: float, now: float, spend: Callable[[int], int]) -> tuple[float, int]:
        """The key's window (a fresh one ending at `reset_at` if the last has passed), its use moved by `spend`."""
        key = hashlib.sha256(key.encode()).hexdigest()  # an API key is a secret, even in the sandbox
        with self._write() as db:
            row = db.execute("SELECT reset_at, used FROM windows WHERE key = ?", (key,)).fetchone()
            current, used = (float(row[0]), int(row[1])) if row is not None and now < row[0] else (reset_at, 0)
            after = spend(used)
            # A request that spent nothing writes nothing (a stranger's bad keys must not fill the file).
            if (current, after) != ((row[0], row[1]) if row is not None else (current, 0)):
                db.execute(
                    "INSERT INTO windows VALUES (?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET reset_at = excluded.reset_at, used = excluded.used",
                    (key, current, after),
                )
            return current, after

    def clear_windows(self) -> None:
        with self._write() as db:
            db.execute("DELETE FROM windows")

    # --- snapshots ------------------------------------------------------------------------------

    def add_snapshot(self, snapshot: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?)",
                (snapshot["id"], snapshot["brain_id"], snapshot["created_at"], json.dumps(snapshot)),
            )

    def snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT body FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return _object(row[0]) if row is not None else None

    def replace_snapshot(self, snapshot: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("UPDATE snapshots SET body = ? WHERE id = ?", (json.dumps(snapshot), snapshot["id"]))

    def delete_snapshot(self, snapshot_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,)).rowcount > 0

    def snapshots_of(self, brain_id: str) -> list[dict[str, Any]]:
        """A brain's snapshots, newest first (ties in the order they were saved)."""
        rows = self._db.execute(
            "SELECT body FROM snapshots WHERE brain_id = ? ORDER BY created_at DESC, rowid ASC", (brain_id,)
        )
        return [_object(body) for (body,) in rows]

    def snapshot_page(self, brain_id: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of `snapshots_of`, and how many there are in all."""
        rows = self._db.execute(
            "SELECT body, count(*) OVER () FROM snapshots WHERE brain_id = ? "
            "ORDER BY created_at DESC, rowid ASC LIMIT ? OFFSET ?",
            (brain_id, limit, offset),
        ).fetchall()
        if rows:
            return [_object(body) for body, _ in rows], int(rows[0][1])
        count = self._db.execute("SELECT count(*) FROM snapshots WHERE brain_id = ?", (brain_id,)).fetchone()[0]
        return [], int(count)

    def snapshot_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM snapshots").fetchone()[0])


def forget(path: Path) -> None:
    """Delete a world file and its sidecars: the next process starts from the seed."""
    for name in ("", *SIDECARS):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + name).unlink()


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    db = open_private_database(path, busy_timeout_s)
    try:
        db.execute("BEGIN IMMEDIATE")  # two processes starting at once: one creates, the other then checks
        try:
            _create_or_check(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except BaseException:
        db.close()
        raise
    return db


def _create_or_check(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    application = db.execute("PRAGMA application_id").fetchone()[0]
    if version == 0 and application == 0 and not db.execute("SELECT 1 FROM sqlite_master").fetchone():
        for statement in TABLES:
            db.execute(statement)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA}")
    elif application != APPLICATION_ID:
        raise WorldUnusable("it is not a flashsnap-mcp sandbox world")
    elif version != SCHEMA:
        raise WorldUnusable(f"it was written by another version (schema {version}, this one reads {SCHEMA})")


def _unreadable(exc: Exception) -> bool:
    """A file that is not a world we can read (corrupt, not SQLite, not ours, another version),
    as opposed to one that is merely busy or in a directory we cannot write."""
    if isinstance(exc, WorldUnusable):
        return True
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _quota_from(fields: dict[str, Any]) -> Quota:
    if fields.get("daily_refreshed"):
        fields["daily_refreshed"] = date.fromisoformat(fields["daily_refreshed"])
    return Quota(**fields)


def _object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value
