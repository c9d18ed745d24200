"""The agent-framework snippets in the README, run as written against `flashsnap-mcp --sandbox` over stdio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_stdio import params

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"

# example file -> what its output must show (each reaches the emulator through a real tool call)
EXPECTED = {
    "openai_agents_client.py": ["'list_workspaces'", "workspaces: ['Marketing Team', 'Side Project']"],
    "pydantic_ai_client.py": ['"name":"Marketing Team"'],
    "fastmcp_client.py": ["can_generate: True", "'search_snapshots'"],
}


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_the_readme_snippet_runs_as_written(example: str) -> None:
    code = (EXAMPLES / example).read_text()
    assert code.strip() in (ROOT / "README.md").read_text(), f"README must show {example} as it is"
    env = params().env or {}
    # `flashsnap-mcp` on PATH, as after `uv tool install` or inside the project's venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        env=env,
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for expected in EXPECTED[example]:
        assert expected in done.stdout, done.stdout
