"""docs/benchmarks.md: one section per benchmark, each rewritten by its own run, with the machine's details."""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
REPORT = DOCS / "benchmarks.md"
HEADER = """# Benchmarks

Every figure here comes from `make bench` (or `make bench BENCH=<name>` for one section), which
runs each benchmark against the emulator on loopback and rewrites its section below. Each
benchmark measures flashsnap-mcp and its baselines in the same run, so ratios hold even when
absolute times drift on a shared machine.
"""


def machine() -> str:
    return (
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores; run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def write_section(name: str, body: str) -> None:
    DOCS.mkdir(exist_ok=True)
    text = REPORT.read_text() if REPORT.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(text)
