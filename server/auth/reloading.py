"""The team file as the running server holds it: checked at start-up, then reloaded when it changes or on SIGHUP.

A change is noticed on use, at most once every `POLL_S` seconds of the injected clock (a `stat`, no thread, no
task), so a test moves the clock instead of sleeping. A new file that fails its checks is refused and the one in
use is kept, said in the log once per version of the file: an operator's typo never locks the team out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from server.auth.team import Team, load
from server.clock import Clock
from server.errors import ConfigurationError

log = logging.getLogger(__name__)

POLL_S = 2.0  # how stale the team may be after an edit; a stat costs microseconds


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


class TeamFile:
    """The team in use, from `path`; `team` notices a changed file (see the module's docstring)."""

    def __init__(self, path: Path, clock: Clock, *, poll_s: float = POLL_S, tokens: bool = False) -> None:
        """Read and check the file once; with `tokens` (tokens mode) it must name someone by a token hash.

        Raises:
            ConfigurationError: the file cannot be read or breaks a rule (the start stops, naming it).
        """
        self.path = path
        self._clock = clock
        self._poll_s = poll_s
        self._tokens = tokens
        self._seen = _signature(path)
        self._team = self._load()
        self._checked_at = clock.now()

    def _load(self) -> Team:
        team = load(self.path)
        if self._tokens and not team.by_token_hash():
            raise ConfigurationError(
                f"team file {self.path}: no principal has a token_sha256, so nobody could call in tokens mode; "
                "`flashsnap-mcp team token NAME` prints one to paste"
            )
        return team

    @property
    def team(self) -> Team:
        """The team in use now, reloaded first when the file changed since it was last looked at."""
        if self._clock.now() - self._checked_at >= self._poll_s:
            self._checked_at = self._clock.now()
            if _signature(self.path) != self._seen:
                self.reload()
        return self._team

    def reload(self) -> bool:
        """Read the file again (SIGHUP, or a change seen); False when the new one was refused and the old kept."""
        self._seen = _signature(self.path)
        self._checked_at = self._clock.now()
        try:
            team = self._load()
        except ConfigurationError as exc:
            log.warning("%s; keeping the team file in use (%d principals)", exc, len(self._team.principals))
            return False
        if team != self._team:
            log.info("team file %s reloaded: %d principals", self.path, len(team.principals))
        self._team = team
        return True


@asynccontextmanager
async def reload_on_hangup(team: TeamFile | None) -> AsyncIterator[None]:
    """While open, SIGHUP reloads the team file (a bad new one is refused and the old one kept, in the log).

    Signals reach the main thread's loop only: a server run in another thread (tests) reloads on change alone.
    Several workers: their supervisor (uvicorn) restarts them on SIGHUP, and each reads the file anew.
    """
    with contextlib.ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGHUP)) if team else None
        except (ValueError, RuntimeError, NotImplementedError):
            log.debug("SIGHUP cannot be received in this thread; the team file reloads when it changes")
            signals = None
        if team is None or signals is None:
            yield
            return

        async def listen() -> None:
            async for _ in signals:
                team.reload()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(listen)
            yield
            tasks.cancel_scope.cancel()
