"""The README's sample outputs are what the commands print: each runs here and is compared line by line.

A fenced block that starts with `$ <command>` is a sample. In it, `…` stands for what differs from run to run
(times, paths, ids) and matches any run of characters; everything else must be printed exactly (trailing
spaces aside). The samples run in a fresh state directory each (the autouse `state_dir` fixture), so the
sandbox starts from its seed.
"""

from __future__ import annotations

import re
from itertools import zip_longest
from pathlib import Path

import anyio
from mcp import Client

from tests.test_check import check
from tests.test_stdio import COMMAND, params

README = Path(__file__).parent.parent / "README.md"
SAMPLE = re.compile(r"^```[a-z]*\n\$ (?P<command>[^\n]+)\n(?P<output>.*?)^```$", re.MULTILINE | re.DOTALL)


def sample(command: str) -> list[str]:
    """The output lines of the README's one sample of `$ <command>`."""
    found = [m["output"] for m in SAMPLE.finditer(README.read_text()) if m["command"] == command]
    assert len(found) == 1, f"README.md has {len(found)} samples of `$ {command}`, expected one"
    return found[0].splitlines()


def line_pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in line.rstrip().split("…")))


def mismatch(shown: list[str], printed: str) -> str | None:
    """Where the sample and the printed output part, or None when every line matches."""
    lines = [line.rstrip() for line in printed.rstrip("\n").splitlines()]
    for number, (want, got) in enumerate(zip_longest(shown, lines), start=1):
        if want is None or got is None or not line_pattern(want).fullmatch(got):
            return f"line {number} of the sample\n  README:  {want!r}\n  printed: {got!r}"
    return None


def test_a_sample_matches_across_the_placeholder_and_nowhere_else() -> None:
    assert mismatch(["requests left until … UTC"], "requests left until 2026-11-26 13:00 UTC\n") is None
    assert mismatch(["at …, state: sqlite (…/state.db)"], "at 12:00, state: sqlite (/x/state.db)") is None
    # What the README said about the Side Project before this test existed: the sandbox prints otherwise.
    stale = ["0 of 2,000 words left today, 8,000 this month; cannot generate: daily quota spent until …"]
    printed = "0 of 2,000 words left today, 0 this month; cannot generate: monthly quota spent"
    assert mismatch(stale, printed) is not None
    assert mismatch(["a", "b"], "a\n") is not None, "a line the command no longer prints"
    assert mismatch(["a"], "a\nb\n") is not None, "a line the sample leaves out"
    assert mismatch(["a(b)"], "a(b)") is None, "the rest of the line is literal text, not a regex"


def test_the_check_sample_is_what_check_prints_in_sandbox_mode() -> None:
    done = check("--sandbox")
    assert done.returncode == 0, done.stdout + done.stderr
    problem = mismatch(sample("flashsnap-mcp check --sandbox"), done.stdout)
    assert problem is None, f"README.md's `check --sandbox` sample is stale at {problem}\n\nprinted:\n{done.stdout}"


async def test_the_status_sample_is_what_status_prints_after_a_sandbox_session() -> None:
    with anyio.fail_after(60):
        async with Client(params("--sandbox")) as client:
            prompt = {"model": "gpt-4.1-mini", "prompt": "A haiku about rate limits", "max_tokens": 500}  # 41 words
            generated = await client.call_tool("generate", prompt)
            assert not generated.is_error, generated
            searched = await client.call_tool("search_snapshots", {"query": "rate limits"})
            assert not searched.is_error, searched
        done = await anyio.run_process([COMMAND, "status"], env=params().env, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    problem = mismatch(sample("flashsnap-mcp status"), out)
    assert problem is None, f"README.md's `status` sample is stale at {problem}\n\nprinted:\n{out}"
