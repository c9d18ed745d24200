"""A state directory or file another user could read or write through is refused, saying why.

Each bad case is arranged as another local user would leave it (files owned by another uid, made with
`os.chown`: the tests run as root), then the server starts on it: the state store says which path and why
and keeps state in the process; the token never reaches a file of the directory, and nothing is followed
through a link. A group-writable directory (Kubernetes `fsGroup` volumes are) is used, with one warning.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from server.clock import FakeClock
from server.sandbox import EmulatorState
from server.state.opening import open_store
from server.state.sqlite import FILENAME
from tests.conftest import Connect
from tests.results import data

OTHER_UID = 4242  # another local user
FILES = [("database", ""), ("-wal", "-wal"), ("-shm", "-shm"), ("-journal", "-journal")]  # (case, suffix)

pytestmark = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="needs root to own files as another uid"
)


def directory(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def planted(path: Path, mode: int = 0o600, uid: int | None = None) -> Path:
    path.write_bytes(b"")
    path.chmod(mode)
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def foreign_directory(d: Path) -> None:
    directory(d)
    os.chown(d, OTHER_UID, OTHER_UID)


def linked(d: Path, name: str) -> None:
    target = planted(directory(d.parent / "elsewhere") / "target", 0o644)
    (directory(d) / name).symlink_to(target)


def fifo(d: Path, name: str) -> None:
    os.mkfifo(directory(d) / name, 0o600)


Arrange = Callable[[Path], object]  # lays out the state directory as another user left it


def foreign(name: str) -> Arrange:
    return lambda d: planted(directory(d) / name, uid=OTHER_UID)


def open_to_all(name: str) -> Arrange:
    return lambda d: planted(directory(d) / name, 0o666)


def link(name: str) -> Arrange:
    return lambda d: linked(d, name)


def pipe(name: str) -> Arrange:
    return lambda d: fifo(d, name)


WRITABLE = "is writable by every user"
CASES: list[tuple[str, Arrange, str]] = [
    ("directory of another user", foreign_directory, "belongs to another user (uid 4242"),
    ("directory writable by everyone", lambda d: directory(d, 0o777), f"{WRITABLE} (mode 0777)"),
    ("directory writable by everyone, sticky", lambda d: directory(d, 0o1777), f"{WRITABLE} (mode 1777)"),
    *[(f"{what} of another user", foreign(FILENAME + side), "belongs to another user") for what, side in FILES],
    *[(f"{what} writable by everyone", open_to_all(FILENAME + side), WRITABLE) for what, side in FILES],
    *[(f"{what} a symbolic link", link(FILENAME + side), "is a symbolic link") for what, side in FILES],
    *[(f"{what} a named pipe", pipe(FILENAME + side), "is not a regular file") for what, side in FILES],
]


@pytest.mark.parametrize(("case", "arrange", "why"), CASES, ids=[c[0] for c in CASES])
async def test_an_unsafe_state_path_is_refused_saying_why(
    connect: Connect, state: EmulatorState, clock: FakeClock, state_dir: Path, case: str, arrange: Arrange, why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    arrange(state_dir)
    before = {p: p.lstat() for p in state_dir.parent.rglob("*")}
    store = await open_store("sqlite", clock, state_dir=state_dir)
    try:
        assert store.kind == "memory"  # this process's own state, not the unsafe file
        assert store.problem is not None
        assert why in store.problem
        assert str(state_dir) in store.problem
        assert "FLASHSNAP_STATE_DIR" in store.problem
    finally:
        await store.aclose()
    with anyio.fail_after(30), caplog.at_level(logging.WARNING):
        async with connect() as client:
            data(await client.call_tool("check_quota", {}))  # the calls go on, on state of this process
    assert any(why in r.getMessage() for r in caplog.records)  # the operator is told
    (token,) = state.issued
    for path in state_dir.parent.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), path
    after = {p: p.lstat() for p in state_dir.parent.rglob("*")}
    assert after.keys() == before.keys()  # nothing made beside what another user left...
    for path, was in before.items():  # ...and nothing changed of it: no chmod through a link, no owner taken
        assert (after[path].st_mode, after[path].st_uid) == (was.st_mode, was.st_uid), path


async def test_a_group_writable_directory_is_used_with_one_warning(
    clock: FakeClock, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kubernetes mounts `fsGroup` volumes group-writable (setgid, 2770): the server must run there."""
    directory(state_dir, 0o2770)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            store = await open_store("sqlite", clock, state_dir=state_dir)
            try:
                assert store.kind == "sqlite"
                assert not store.degraded
            finally:
                await store.aclose()
    warned = [r.getMessage() for r in caplog.records if "group-writable" in r.getMessage()]
    assert len(warned) == 1
    assert str(state_dir) in warned[0]
    assert stat.S_IMODE((state_dir / FILENAME).stat().st_mode) == 0o600


async def test_a_database_of_ones_own_with_loose_modes_is_made_private(clock: FakeClock, state_dir: Path) -> None:
    """The user's own files, readable by the group or others (an old umask): used, and made 0600."""
    planted(directory(state_dir) / FILENAME, 0o644)
    planted(state_dir / (FILENAME + "-wal"), 0o640)
    store = await open_store("sqlite", clock, state_dir=state_dir)
    try:
        assert store.kind == "sqlite"
        for name in (FILENAME, FILENAME + "-wal"):
            assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600
    finally:
        await store.aclose()
