"""`make demo` runs end to end over stdio and speaks the default protocol, 2026-07-28."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_stdio import params

DEMO = Path(__file__).parent.parent / "scripts" / "demo.py"


def test_the_demo_walks_every_tool_on_the_modern_protocol() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO)], env=params().env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Connected: flashsnap-mcp (2026-07-28)" in done.stdout
    assert "tools/list may be cached for 600 s" in done.stdout
    assert "Done: every tool answered" in done.stdout
    assert "done in the voice 'Friendly expert'" in done.stdout
    assert "crystallize tokens spent" in done.stdout
    assert "sent with max_tokens=1,024: the server's own bound, so nobody was asked" in done.stdout
    assert "an id that does not exist: not_found, no question" in done.stdout
    assert "the client asks the user: 'Delete the snapshot" in done.stdout
    assert done.stdout.count("the client asks the user") == 2  # once declined, once accepted: nothing else asks
    assert "The question was declined, so nothing was done" in done.stdout
    assert "deleted: True" in done.stdout
