"""`flashsnap-mcp --transport streamable-http` as a deployment runs it: a subprocess, SIGTERM, exit codes."""

from __future__ import annotations

import signal
import subprocess

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from mcp import Client

from tests.results import data
from tests.servers import free_port
from tests.test_stdio import COMMAND, params


async def wait_for_line(process: Process, needle: str, seen: list[str]) -> None:
    assert process.stderr is not None
    async for chunk in TextReceiveStream(process.stderr):
        seen.append(chunk)
        if needle in "".join(seen):
            return
    raise AssertionError(f"the server exited before saying {needle!r}: {''.join(seen)}")


async def test_sigterm_lets_an_in_flight_call_finish_then_exits_cleanly() -> None:
    port = free_port()
    env = params().env
    command = [COMMAND, "--sandbox", "--transport", "streamable-http", "--port", str(port)]
    seen: list[str] = []
    with anyio.fail_after(60):
        async with await anyio.open_process(command, env=env) as process:
            await wait_for_line(process, "serving streamable-http", seen)
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                data(await client.call_tool("list_workspaces", {}))
                result: dict[str, object] = {}
                streaming = anyio.Event()

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    streaming.set()

                async def generate() -> None:
                    result.update(
                        data(
                            await client.call_tool(
                                "generate",
                                {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 500},
                                progress_callback=on_progress,
                            )
                        )
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(generate)
                    await streaming.wait()
                    process.send_signal(signal.SIGTERM)
            assert result["text"]  # the call in flight when the signal came was answered in full
            await wait_for_line(process, "upstream clients closed", seen)
            # uvicorn re-raises the signal once shut down, so the exit reads as "ended by SIGTERM",
            # which service managers (systemd among them) count as a clean stop.
            assert await process.wait() in (0, -signal.SIGTERM)


def test_listening_off_loopback_without_a_token_refuses_to_start() -> None:
    command = [COMMAND, "--transport", "streamable-http", "--host", "0.0.0.0"]  # noqa: S104
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=params().env, check=False)
    assert done.returncode == 2
    assert "FLASHSNAP_HTTP_TOKEN" in done.stderr
    assert done.stdout == ""
