"""Files only their user can read: the state database, the sandbox world and the audit key, on any platform."""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import stat
import time
from pathlib import Path


def private_file(path: Path) -> None:
    """Create `path` 0600 (and its directory 0700, when it has to be made), whatever the umask.

    A directory that already exists keeps its mode: it may be one the user chose and shares on
    purpose; the file in it is private all the same.
    """
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            directory.chmod(0o700)  # mkdir's mode passes through the umask
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)


def open_private_database(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """An SQLite database only its user can read, in WAL mode, in autocommit (callers open transactions)."""
    # Created 0600 before SQLite opens it; SQLite gives its WAL and shared-memory files the same mode.
    private_file(path)
    db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        _switch_to_wal(db, deadline=time.monotonic() + busy_timeout_s)
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def _switch_to_wal(db: sqlite3.Connection, *, deadline: float) -> None:
    # Switching a new database to WAL takes an exclusive lock, and SQLite reports a conflict at once
    # instead of waiting (to avoid a deadlock): several processes opening a fresh database meet it.
    # Called off the event loop, so it may wait here, up to the busy timeout.
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def private_secret(path: Path) -> str:
    """The secret kept in `path`, made (64 random hex characters, readable only by its user) when there is none.

    Written to a private draft first and linked into place, so two processes starting at once agree on one.
    """
    if not path.exists():
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        private_file(draft)
        draft.write_text(secrets.token_hex(32) + "\n", encoding="ascii")
        try:
            path.hardlink_to(draft)
        except FileExistsError:
            pass  # another process made it first: its secret is the secret
        finally:
            draft.unlink()
    return path.read_text(encoding="ascii").strip()
