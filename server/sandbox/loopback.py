"""Serve an ASGI app with uvicorn on a loopback port, in a thread of its own (the emulator; tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType
from typing import Literal, Self

import uvicorn
from starlette.types import ASGIApp


class _PromptServer(uvicorn.Server):
    """uvicorn, stopped at once: its main loop looks for `should_exit` every 0.1 s, which `stop` cuts short, and
    its shutdown waits 0.1 s, then polls the connections every 0.1 s; a loopback peer closes in far less.

    Each test stops an emulator or two, so those tenths of a second added up to minutes of every suite run.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _woken: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._woken = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 0.1)  # the same tick as uvicorn's, or sooner
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._drained(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _drained(self) -> None:
        """Until every connection closed and every task finished (uvicorn's `_wait_tasks_to_complete`, finer)."""
        # uvicorn signals nothing when a connection closes: look again every 5 ms.
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()

    def wake(self) -> None:
        """Have the main loop look at `should_exit` now (from any thread)."""
        loop, woken = self._loop, self._woken
        if loop is not None and woken is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed already: nothing left to wake
                loop.call_soon_threadsafe(woken.set)


class LoopbackServer:
    """`with LoopbackServer(app) as server:` then reach it at `server.url`."""

    def __init__(
        self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, lifespan: Literal["on", "off"] = "off"
    ) -> None:
        # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted sockets only then, and
        # without it Nagle and delayed ACKs add 40 ms to every answer sent in two writes.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        # log_config=None: uvicorn must never set up a handler on stdout (stdio mode owns it).
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan=lifespan, timeout_graceful_shutdown=1)
        self._server = _PromptServer(config)
        self._thread = threading.Thread(target=self._serve, name=f"loopback-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> Self:
        self._socket.listen(128)  # connections queue in the backlog until uvicorn accepts them
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
