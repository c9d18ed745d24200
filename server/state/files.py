"""Files only their user can read: the state database, the sandbox world and the audit key, on any platform."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import sqlite3
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)
SIDECARS = ("-wal", "-shm", "-journal")  # the files SQLite keeps beside a database, which hold its pages too
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has no symbolic links a user can plant this way
_warned: set[Path] = set()  # group-writable directories already warned about: once per process


class UnsafeStatePath(OSError):
    """A state path another user could read or write through: refused, with why and what to do."""


FIX = "set FLASHSNAP_STATE_DIR to a directory of your own, mode 0700"


def private_file(path: Path) -> None:
    """Create `path` 0600 (and its directory 0700, when it has to be made), whatever the umask.

    A directory that already exists keeps its mode: it may be one the user chose and shares on
    purpose; the file in it is private all the same. But a directory, database or SQLite side file
    (`-wal`, `-shm`, `-journal`) that another user owns or every user may write, or a database or side
    file that is a symbolic link, is refused (`UnsafeStatePath`, saying which and why): another user
    could read the token from it or plant documents in it. A group-writable directory (Kubernetes
    `fsGroup` volumes are) is used, with one warning.

    Raises:
        UnsafeStatePath: the directory or one of the files is not this user's alone to write.
    """
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            directory.chmod(0o700)  # mkdir's mode passes through the umask
    if os.name == "posix":
        _check_directory(directory)
    for suffix in SIDECARS:  # before the database is made: nothing is created beside a file another user left
        _own_file(path.with_name(path.name + suffix), create=False)
    _own_file(path, create=True)


def _check_directory(directory: Path) -> None:
    found = os.stat(directory)  # a link to a directory is fine: the directory it names is checked
    _check_owner(f"the state directory {directory}", found)
    if found.st_mode & stat.S_IWOTH:
        raise UnsafeStatePath(
            f"the state directory {directory} is writable by every user (mode {_mode(found)}): another user "
            f"could replace or read its files; run chmod o-w {directory}, or {FIX}"
        )
    if found.st_mode & stat.S_IWGRP and directory not in _warned:
        _warned.add(directory)
        log.warning(
            "the state directory %s is group-writable (mode %s): the group's other members could replace its "
            "files; fine on a volume only this server's group uses",
            directory,
            _mode(found),
        )


def _own_file(path: Path, *, create: bool) -> None:
    """Open `path` without following a link, check it is ours alone, and make it 0600.

    Raises:
        UnsafeStatePath: it is a link, not a regular file, another user's, or writable by every user.
        OSError: it could not be opened at all (the caller says the directory is unusable).
    """
    what = f"the state file {path}"
    flags = (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return  # a side file SQLite has not made (yet): it makes it with the database's mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeStatePath(
                f"{what} is a symbolic link: it could point at any file; remove it, or {FIX}"
            ) from None
        raise
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise UnsafeStatePath(f"{what} is not a regular file; remove it, or {FIX}")
        if os.name != "posix":
            return
        _check_owner(what, found)
        if found.st_mode & stat.S_IWOTH:
            raise UnsafeStatePath(
                f"{what} is writable by every user (mode {_mode(found)}): another user may have read the token "
                f"from it or planted documents in it; remove it, or {FIX}"
            )
        if stat.S_IMODE(found.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _check_owner(what: str, found: os.stat_result) -> None:
    if found.st_uid != os.geteuid():
        raise UnsafeStatePath(
            f"{what} belongs to another user (uid {found.st_uid}, this server runs as uid {os.geteuid()}): "
            f"that user could read the token from it or plant documents in it; {FIX}"
        )


def _mode(found: os.stat_result) -> str:
    return f"{stat.S_IMODE(found.st_mode):04o}"


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
