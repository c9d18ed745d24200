"""The audit log's writer: one sealed JSON line per call or refusal, to one file per writer, rotated by size or day.

One writer writes exactly `FLASHSNAP_AUDIT_LOG`. A process is one of several when `FLASHSNAP_WORKERS` is
above 1, or when another process holds the lock beside the file (`PATH.lock`: another server on this host
or, where the volume honours `flock`, on another); it then writes `stem-<host>-<pid>.suffix`, its own chain,
claimed by the same lock (replicas given one host name, each its server as process 1, add `-2`, `-3`, ...).
Each record is one `write` of a whole line to a file opened with `O_APPEND`, so no reader sees a half line
from this writer and no two writers ever share a file. A rotated file is renamed `stem.<UTC time>-<n>.suffix`
and the new file's first record chains to its last one, so a set checks in name order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server import context
from server.clock import Clock
from server.observe import otel_logs
from server.observe.audit_chain import KEYS, Keys, last_record, line

log = logging.getLogger(__name__)

LOCAL = "local"  # the principal over stdio: whoever started the process
TAIL_BYTES = 65_536  # enough of a file's end to hold its last record
DENIED = "denied"
_STAMP = r"\d{8}T\d{6}Z-\d{3}"


def principal(transport: str) -> str | None:
    """Who the record names: the caller's principal (the team file's name, else the token's issuer and subject or
    client id), `local` over stdio, else None (the shared token names nobody).

    The one place the audit log asks who is calling.
    """
    caller = context.principal()
    if caller is not None:
        return caller.name or caller.client_id
    return LOCAL if transport == "stdio" else None


def rfc3339(unix_s: float) -> str:
    """`2026-12-06T16:13:36.123Z`: UTC, milliseconds."""
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


MAX_WRITERS = 256  # writers of one audit path at once: workers and replicas, with room to spare


def writer_name() -> str:
    """This process among several: its host and process id, in characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", socket.gethostname()) + f"-{os.getpid()}"


def rotated_set(path: Path) -> list[Path]:
    """The files rotated out of `path`, oldest first (their names sort by the time they were rotated)."""
    pattern = re.compile(rf"{re.escape(path.stem)}\.{_STAMP}{re.escape(path.suffix)}")
    return sorted(p for p in path.parent.glob(f"{path.stem}.*{path.suffix}") if pattern.fullmatch(p.name))


def _tail(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError), path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - TAIL_BYTES))
        return file.read().decode("utf-8", "replace")
    return ""


def _claim(path: Path) -> int | None:
    """Hold the lock beside `path` for the life of this process (its descriptor), or None when another holds it."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: several writers must say so with FLASHSNAP_WORKERS
        return -1
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _own_file(path: Path, *, several: bool) -> tuple[Path, int]:
    """The file this writer alone writes, and the lock that says so: `path` unless another holds it (or this is one
    of several workers), else `stem-<host>-<pid>`, else that with `-2`, `-3`, ... (containers may share both).

    Raises:
        OSError: every name up to `MAX_WRITERS` is held (a bound, so a broken lock cannot loop forever).
    """
    own = f"{path.stem}-{writer_name()}"
    candidates = [path.with_name(f"{own}{'' if n == 1 else f'-{n}'}{path.suffix}") for n in range(1, MAX_WRITERS + 1)]
    for candidate in candidates if several else [path, *candidates]:
        fd = _claim(candidate)
        if fd is not None:
            return candidate, fd
    raise OSError(f"audit log {path}: {MAX_WRITERS} writers hold its names already")


class AuditLog:
    """Appends sealed records to this writer's file; `record` for a request served, `refused` for one refused."""

    def __init__(
        self,
        path: Path,
        secret: str,
        clock: Clock,
        *,
        transport: str = "stdio",
        several: bool = False,
        max_bytes: int | None = None,
        daily: bool = False,
    ) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._keys = Keys(secret)
        self._clock = clock
        self._transport = transport
        self._max_bytes = max_bytes
        self._daily = daily
        self._mutex = threading.Lock()  # one line at a time from this process's threads
        self.path, self._lock_fd = _own_file(path, several=several)
        self._fd = self._open()
        tail = last_record(_tail(self.path)) or next(
            (r for r in (last_record(_tail(p)) for p in reversed(rotated_set(self.path))) if r), None
        )
        self._prev: str | None = tail["hash"] if tail else None
        self._day = str(tail.get("time", ""))[:10] if tail else None
        log.info("audit log: %s", self.path)

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(fd).st_size
        if self._size and not _tail(self.path).endswith("\n"):
            # A process killed mid-line left half a record: end it, so the records after it stay whole lines
            # (verify names the half line; the chain goes on from the last whole record).
            log.warning("audit log %s ends in half a record (a crash?); `audit verify` will name it", self.path)
            self._size += os.write(fd, b"\n")
        return fd

    def close(self) -> None:
        """Close the file and give up the lock; a record arriving later is dropped, and said so in the log."""
        with self._mutex:
            for fd in (self._fd, self._lock_fd):
                if fd is not None and fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._fd = self._lock_fd = -1  # never write to a descriptor number the process may reuse

    def record(
        self,
        *,
        method: str,
        tool: str | None,
        outcome: str,
        principal: str | None,
        account: str | None = None,
        request_ids: Sequence[str] = (),
        words: int | None = None,
        wait_s: float | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one record of a request served (`outcome`: `ok`, the error's code, `cancelled`, `shutdown`)."""
        self._append({
            "principal": principal, "method": method, "tool": tool, "account": account, "outcome": outcome,
            "request_ids": list(request_ids), "words": words,
            "wait_s": None if wait_s is None else round(wait_s, 3),
            "args_hmac": self._keys.args_hmac(arguments),
        })  # fmt: skip

    def refused(self, principal: str | None, method: str, tool: str | None, reason: str) -> None:
        """Write one `denied` record: a presented token refused (`principal` None) or a scope missing.

        For the transports' auth layer, once per refusal; a request that presents no token is not written.
        `reason` goes to the server's log, not the record: the principal says which of the two it was.
        """
        log.info("refused %s %s for %s: %s", method, tool or "", principal or "an unknown token", reason)
        self.record(method=method, tool=tool, outcome=DENIED, principal=principal)

    def caller(self) -> str | None:
        """The principal of the request being served now (see `principal`)."""
        return principal(self._transport)

    def _append(self, fields: Mapping[str, Any]) -> None:
        now = rfc3339(self._clock.now())
        with self._mutex:
            if self._fd < 0:
                log.error("audit log %s: closed, a %s record was not written", self.path, fields.get("method"))
                return
            text, digest = line(self._keys, {"time": now, **fields}, self._prev)
            data = text.encode()
            size = len(data)
            try:
                if self._due(now[:10], size):
                    self._rotate()
                while data:  # one write for a regular file; the loop only matters on a short write
                    data = data[os.write(self._fd, data) :]
            except OSError as exc:  # a full disk must not fail the call it records: say so loudly
                log.error("audit log %s: record not written (%s)", self.path, exc.strerror or exc)
                return
            self._prev, self._day, self._size = digest, now[:10], self._size + size
        otel_logs.emit("flashsnap.audit", text.rstrip("\n"), {f"flashsnap.audit.{k}": fields.get(k) for k in KEYS})

    def _due(self, day: str, size: int) -> bool:
        if self._size == 0:
            return False
        if self._daily and self._day is not None and day != self._day:
            return True
        return self._max_bytes is not None and self._size + size > self._max_bytes

    def _rotate(self) -> None:
        stamp = datetime.fromtimestamp(self._clock.now(), UTC).strftime("%Y%m%dT%H%M%SZ")
        taken = {p.name for p in rotated_set(self.path)}
        n = 0
        while (name := f"{self.path.stem}.{stamp}-{n:03d}{self.path.suffix}") in taken:
            n += 1
        self.path.rename(self.path.with_name(name))  # a failure leaves the current file as it was, still open
        old, self._fd = self._fd, self._open()
        os.close(old)
