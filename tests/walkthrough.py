"""One pass over every tool, as a user's assistant would make it; shared by the transport tests."""

from __future__ import annotations

from typing import Any

from mcp import Client

import tools
from tests.results import data

CRYSTAL = "Short answers get read.\n\nLong answers get skimmed, then forgotten by the end of the day."


async def walk_every_tool(client: Client, note: str) -> dict[str, Any]:
    """Call each tool once (the server offers every toolset), checking what a user would see; returns
    list_workspaces' result."""
    assert len((await client.list_tools()).tools) == len(tools.ALL)
    workspaces = data(await client.call_tool("list_workspaces", {}))
    assert data(await client.call_tool("check_quota", {}))["can_generate"] is True
    models = data(await client.call_tool("list_models", {}))["models"]
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    args = {"model": models[0]["id"], "prompt": "Hello", "max_tokens": 500}  # within what runs unasked
    assert data(await client.call_tool("generate", args, progress_callback=on_progress))["text"]
    assert seen
    assert seen == sorted(seen)
    saved = data(await client.call_tool("snapshot", {"name": note, "core": f"{note}: it works."}))
    found = data(await client.call_tool("search_snapshots", {"query": note}))
    assert [s["id"] for s in found["snapshots"]] == [saved["id"]]
    assert data(await client.call_tool("get_snapshot", {"id": saved["id"]}))["name"] == note
    voice = data(await client.call_tool("list_brand_voices", {}))["brand_voices"][0]["id"]
    assert data(await client.call_tool("generate", {**args, "brand_voice_id": voice}))["text"]
    group = data(await client.call_tool("list_twins", {}))["groups"][0]["key"]
    twin = data(await client.call_tool("list_twins", {"group": group}))["twins"][0]["id"]
    assert data(await client.call_tool("ask_twins", {"twin_ids": [twin], "question": note}))["answers"]
    assert data(await client.call_tool("crystallize", {"text": f"{note}. {CRYSTAL}"}))["count"] >= 1
    listed = data(await client.call_tool("list_snapshots", {"limit": 100}))["snapshots"]
    assert saved["id"] in [s["id"] for s in listed]
    changed = data(await client.call_tool("update_snapshot", {"id": saved["id"], "tags": ["checked"]}))
    assert (changed["tags"], changed["core"]) == (["checked"], saved["core"])
    assert data(await client.call_tool("delete_snapshot", {"id": saved["id"], "confirm": True}))["deleted"] is True
    return workspaces
