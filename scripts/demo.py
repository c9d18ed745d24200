"""`make demo`: start flashsnap-mcp over stdio in sandbox mode and walk through every tool with a real MCP client."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from server.tooling.calls import ERROR_META

WIDTH = 30
EXPECTED_CHARS = 300  # the bar's scale: about what a 60-token answer holds
BOLD, PLAIN = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def heading(title: str) -> None:
    print(f"\n{BOLD}== {title}{PLAIN}")


def show_error(result: CallToolResult) -> None:
    text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
    print("  isError: true — what the model reads:")
    print(textwrap.indent(textwrap.fill(text, 90), "    "))


def structured(result: CallToolResult) -> dict[str, Any]:
    if result.is_error:
        show_error(result)
        raise SystemExit("demo: a call that should have worked failed")
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


class DemoUser:
    """Stands in for the person at the client's form: prints each question, then answers as told."""

    def __init__(self) -> None:
        self.answer = "decline"

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        print(f"  the client asks the user: {params.message!r}")
        print(f"  the user answers: {self.answer}")
        if self.answer == "accept":
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action="decline")


async def main() -> None:
    command = shutil.which("flashsnap-mcp", path=str(Path(sys.executable).parent)) or "flashsnap-mcp"
    # A state directory of its own: each demo starts from the sandbox's seed, and leaves a user's sandbox world
    # (shared by every --sandbox process of theirs) as it was.
    state_dir = tempfile.TemporaryDirectory(prefix="flashsnap-demo-")
    server = StdioServerParameters(
        command=command,
        args=["--sandbox", "--toolsets", "default,neuralsnap-write", "--log-level", "WARNING"],
        env={**os.environ, "FLASHSNAP_STATE_DIR": state_dir.name},
    )
    print(f"Starting `{command} --sandbox --toolsets default,neuralsnap-write` as a subprocess, over stdio…")
    with state_dir, anyio.fail_after(120):
        user = DemoUser()
        async with Client(server, elicitation_callback=user) as client:  # the default: the 2026-07-28 protocol
            print(f"Connected: {client.server_info.name if client.server_info else '?'} ({client.protocol_version})")
            listed = await client.list_tools()
            print("Tools:", ", ".join(t.name for t in listed.tools))
            if listed.ttl_ms:  # SEP-2549: the list is fixed for the server's life, so the client may cache it
                print(f"  (tools/list may be cached for {listed.ttl_ms // 1000} s, scope {listed.cache_scope})")

            heading("list_workspaces")
            workspaces = structured(await client.call_tool("list_workspaces", {}))
            for ws in workspaces["workspaces"]:
                print(f"  {ws['name']:<16} {ws['id']}{'  (default)' if ws['is_default'] else ''}")

            heading("check_quota (default workspace)")
            quota = structured(await client.call_tool("check_quota", {}))
            for q in quota["quotas"]:
                d, m = q["daily"], q["monthly"]
                print(
                    f"  {q['usage_type']:<7} daily {d['used']:>6}/{d['limit']:<6}"
                    f" monthly {m['used']:>7}/{m['limit']:<7} resets {d['next_reset']}"
                )
            print(f"  can_generate: {quota['can_generate']}")

            heading("list_models (openai)")
            models = structured(await client.call_tool("list_models", {"provider": "openai"}))
            for model in models["models"]:
                print(f"  {model['id']:<14} {model['context_window']:>9} tokens  reasoning={model['reasoning_model']}")

            heading("generate (streamed, with live progress): the plain call, no max_tokens, no question")

            async def progress(progress: float, total: float | None, message: str | None) -> None:
                filled = min(WIDTH, int(progress * WIDTH / EXPECTED_CHARS))
                bar = "█" * filled + "░" * (WIDTH - filled)
                print(f"\r  [{bar}] {message or ''}   ", end="", flush=True)

            args = {"model": "gpt-4.1-mini", "prompt": "Write a tagline for a note-taking app."}
            result = structured(await client.call_tool("generate", args, progress_callback=progress))
            print(f"\r  [{'█' * WIDTH}] done: {result['words_used']} words, finish_reason={result['finish_reason']}")
            print(f"  sent with max_tokens={result['max_tokens']:,}: the server's own bound, so nobody was asked")
            print(textwrap.indent(textwrap.fill(result["text"], 90), "  > "))
            print(f"  model={result['model']}  request_id={result['request_id']}")

            heading("list_brand_voices + generate in a brand voice")
            voices = structured(await client.call_tool("list_brand_voices", {}))
            for voice in voices["brand_voices"]:
                print(f"  {voice['id']:<12} {voice['name']:<16} {voice['description']}")
            voice = voices["brand_voices"][0]
            branded = structured(
                await client.call_tool("generate", {**args, "brand_voice_id": voice["id"]}, progress_callback=progress)
            )
            print(f"\r  [{'█' * WIDTH}] done in the voice {voice['name']!r}: {branded['words_used']} words")
            print(textwrap.indent(textwrap.fill(branded["text"], 90), "  > "))

            heading("snapshot: save the idea to NeuralSnap")
            saved = structured(
                await client.call_tool(
                    "snapshot",
                    {
                        "name": "Taglines earn attention",
                        "core": "A tagline names one benefit plainly and ends with a next step.",
                        "type": "Principle",
                        "tags": ["copywriting", "demo"],
                        "confidence": 0.8,
                    },
                )
            )
            print(f"  saved snapshot {saved['id']} ({saved['type']}) tags={saved['tags']}")

            heading("search_snapshots + get_snapshot: find it again")
            found = structured(await client.call_tool("search_snapshots", {"query": "tagline benefit"}))
            for hit in found["snapshots"]:
                print(f"  {hit['similarity']:.2f}  {hit['name']}  ({hit['id']})")
            again = structured(await client.call_tool("get_snapshot", {"id": found["snapshots"][0]["id"]}))
            print(f"  get_snapshot → {json.dumps({k: again[k] for k in ('name', 'core', 'created_at')})}")

            heading("crystallize: turn a conversation into snapshots")
            conversation = (
                "We agreed that taglines should name one benefit plainly.\n\n"
                "Long feature lists in ads lose readers before the call to action.\n\n"
                "Every campaign gets one measurable goal before any copy is written."
            )
            crystal = structured(
                await client.call_tool("crystallize", {"text": conversation, "source_type": "conversation"})
            )
            for made in crystal["snapshots"]:
                print(f"  + {made['name']!r}  ({made['id']})")
            print(f"  {crystal['count']} snapshots, {crystal['tokens']} crystallize tokens spent")

            heading("delete_snapshot: refused unasked when there is nothing to delete, else the user is asked")
            missing = await client.call_tool("delete_snapshot", {"id": "00000000-0000-4000-8000-000000000000"})
            print(
                f"  an id that does not exist: {missing.meta[ERROR_META]['code'] if missing.meta else '?'}, no question"
            )
            doomed = crystal["snapshots"][-1]["id"]
            show_error(await client.call_tool("delete_snapshot", {"id": doomed}))
            user.answer = "accept"
            gone = structured(await client.call_tool("delete_snapshot", {"id": doomed}))
            print(f"  deleted: {gone['deleted']}")

            heading("generate in a workspace whose quota is spent")
            spent = next(ws for ws in workspaces["workspaces"] if not ws["is_default"])
            refused = await client.call_tool(
                "generate",
                {"model": "gpt-4.1-mini", "prompt": "One more, please.", "workspace_id": spent["id"]},
            )
            show_error(refused)
            if refused.meta:
                print(f"  _meta[{ERROR_META!r}]: {json.dumps(refused.meta[ERROR_META])}")
    print("\nDone: every tool answered over stdio, against the sandbox emulator.")


if __name__ == "__main__":
    anyio.run(main)
