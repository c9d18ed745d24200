"""Nothing charged twice, nothing lost: the emulator's books against what the tools reported."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
from mcp import Client

from server.sandbox import EmulatorState
from server.sandbox.records import Fault


async def test_words_charged_equal_words_reported_and_each_snapshot_exists_once(
    client: Client, state: EmulatorState
) -> None:
    # Faults among the calls: streams cut, 502s, resets, and a 429 on snapshot creation.
    state.inject("chat", Fault(cut_after_chunks=2, times=3))
    state.inject("chat", Fault(status=502, times=2))
    state.inject("snapshot_create", Fault(status=502, times=2))
    state.inject("snapshot_create", Fault(body="reset", times=2))
    state.inject("snapshot_create", Fault(status=429, retry_after_s=1, times=2))
    reported_words: list[int] = []
    created: list[str] = []
    failed = Counter[str]()

    async def generate(i: int) -> None:
        result = await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": f"Line {i}"})
        if result.is_error:
            failed["generate"] += 1
        else:
            reported_words.append(_content(result)["words_used"])

    async def snapshot(i: int) -> None:
        result = await client.call_tool("snapshot", {"name": f"Idea {i}", "core": "c"})
        if result.is_error:
            failed["snapshot"] += 1
        else:
            created.append(_content(result)["id"])

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(generate, i)
                tg.start_soon(snapshot, i)
    assert failed["generate"] == 5  # 3 cut streams and 2 502s: reported, never repeated
    assert failed["snapshot"] == 4  # 2 502s and 2 resets; the 429s were waited out and retried
    assert state.words_charged == sum(reported_words)
    assert len(created) == len(set(created)) == 16
    upstream = Counter(s["id"] for s in state.snapshots.values())
    assert set(upstream) == set(created)
    assert all(n == 1 for n in upstream.values())


def _content(result: Any) -> dict[str, Any]:
    content: dict[str, Any] = result.structured_content
    return content
