"""Log records written to stderr by a thread of their own: a client that never reads stderr never stops the server.

A pipe holds about 64 KB. Written from the event loop, the next log line after that blocks the loop, and with it
every answer (pings included) until someone reads. Here a record is formatted where it is logged, queued, and
written by one daemon thread; a write that blocks holds only that thread. The queue is bounded (BACKLOG_BYTES):
past it records are dropped and counted, and once stderr takes lines again the count is written after the backlog.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from typing import TextIO

BACKLOG_BYTES = 256 * 1024  # what waits for a stalled reader: ~2,000 lines; more is dropped, and counted
EXIT_WAIT_S = 1.0  # at exit, how long the backlog may take to reach stderr (a reader may be gone for good)


class BacklogHandler(logging.Handler):
    """A handler whose `emit` never blocks on `stream`: records wait in a bounded backlog for a writer thread."""

    def __init__(self, stream: TextIO, *, backlog_bytes: int = BACKLOG_BYTES) -> None:
        super().__init__()
        self._stream = stream
        self._limit = backlog_bytes
        self._lines: deque[str] = deque()
        self._size = 0
        self._dropped = 0
        self._writing = False
        self._ready = threading.Condition()
        threading.Thread(target=self._write_forever, name="stderr-backlog", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        with self._ready:
            if self._size + len(line) > self._limit:
                self._dropped += 1
                return
            self._lines.append(line)
            self._size += len(line)
            self._ready.notify()

    def flush(self) -> None:
        """Wait (a bounded time) for the backlog to reach stderr: at exit, so the last lines are not lost."""
        with self._ready:
            self._ready.wait_for(lambda: not self._lines and not self._writing and not self._dropped, EXIT_WAIT_S)

    def _write_forever(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._lines) or self._dropped > 0)
                lines, dropped = list(self._lines), self._dropped
                self._lines.clear()
                self._size, self._dropped, self._writing = 0, 0, True
            if dropped:
                lines.append(f"{dropped} log record(s) dropped: stderr was not being read and {self._limit:,} bytes "
                             "were waiting for it\n")  # fmt: skip
            try:
                self._stream.write("".join(lines))
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr is closed: nobody will read the logs, and the server goes on
            finally:
                with self._ready:
                    self._writing = False
                    self._ready.notify_all()


@functools.cache
def backlog_for(stream: TextIO) -> BacklogHandler:
    """The one backlog (and writer thread) of `stream`, however often logging is configured."""
    return BacklogHandler(stream)
