"""`make regenerate`: rewrite what is derived from the tools and the version, then review the diff.

- tests/contracts/<tool>.json: what a model sees of each tool (tests/test_contracts.py pins them);
- mcpb/manifest.json: the bundle's tool list (first docstring line of each) and its version;
- server.json: the registry entry's versions (its package and its image tag);
- README.md: the rows of its two tables of what the tool list costs a model's context
  (tests/test_tool_selection.py measures the same way and holds the README to it), and the tool line of its
  `check --sandbox` sample (tests/test_readme_samples.py runs check and compares).

A new or changed tool needs only this after its own module and its line in `tools.ALL`;
`--check` changes nothing and exits 1 when a file is out of date.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

import tools
from server.app import create_app, tool_selection
from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "tests" / "contracts"
MANIFEST = ROOT / "mcpb" / "manifest.json"
SERVER_JSON = ROOT / "server.json"
README = ROOT / "README.md"


async def contracts() -> dict[Path, str]:
    """Each tool as a client lists it, with every toolset on (no upstream is reached to list them)."""
    settings = Settings.from_env({"FLASHSNAP_TOOLSETS": "all", "FLASHSNAP_STATE": "memory"})
    async with Client(create_app(settings)) as client:
        listed = (await client.list_tools()).tools
    found = {}
    for tool in listed:
        contract = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
        contract.pop("_meta", None)
        found[CONTRACTS / f"{tool.name}.json"] = json.dumps(contract, indent=2, sort_keys=True) + "\n"
    return found


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def manifest(version: str) -> str:
    """The bundle manifest with the tools of `tools.ALL`, each with its description's first line."""
    doc = json.loads(MANIFEST.read_text())
    doc["version"] = version
    doc["tools"] = [
        {"name": spec.name, "description": inspect.cleandoc(spec.fn.__doc__ or "").splitlines()[0]}
        for spec in tools.ALL
    ]
    return _json(doc)


def server_json(version: str) -> str:
    """The registry entry with `version` on itself, its PyPI package and its image's tag."""
    doc = json.loads(SERVER_JSON.read_text())
    doc["version"] = version
    for package in doc["packages"]:
        if package["registryType"] == "oci":
            package["identifier"] = f"{package['identifier'].rpartition(':')[0]}:{version}"
        else:
            package["version"] = version
    return _json(doc)


async def _listed(**selection: object) -> list[Any]:
    async with Client(create_app(Settings.model_validate(selection))) as client:
        return list((await client.list_tools()).tools)


async def _list_size(**selection: object) -> tuple[int, int, int]:
    """Tools, bytes and estimated tokens (4 bytes a token) of the tools/list result as a client receives it."""
    tools_ = await _listed(**selection)
    body = json.dumps([t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools_]).encode()
    return len(tools_), len(body), round(len(body) / 4)


async def _model_size(**selection: object) -> tuple[int, int]:
    """Tools, and what a model reads of them: compact {"name", "description", "input_schema"} in UTF-8, summed."""
    tools_ = await _listed(**selection)
    shown = [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools_]
    return len(tools_), sum(len(json.dumps(s, separators=(",", ":"), ensure_ascii=False).encode()) for s in shown)


async def readme() -> str:
    """README.md with its tool-list size rows measured afresh."""
    text = README.read_text()
    for label, selection in (
        ("default toolsets", {}),
        ("`--read-only`", {"read_only": True}),
        ("`--toolsets all`", {"toolsets": ("all",)}),
    ):
        count, size, tokens = await _list_size(**selection)
        row = f"| {label} | {count} | {size:,} | ~{tokens:,} |"
        text = re.sub(rf"^\| {re.escape(label)} \| \d+ \| [\d,]+ \| ~[\d,]+ \|$", row, text, flags=re.MULTILINE)
    for label, selection in (("`default`", {}), ("`all`", {"toolsets": ("all",)})):
        count, size = await _model_size(**selection)
        row = f"| {label} | {count} | {size:,} |"
        text = re.sub(rf"^\| {re.escape(label)} \| \d+ \| [\d,]+ \|$", row, text, flags=re.MULTILINE)
    # The `check --sandbox` sample's tool line: what check prints of the default selection (server/cli/check.py).
    chosen = tool_selection(Settings())
    off = f"; off: {', '.join(chosen.off)}" if chosen.off else ""
    on = f"{len(chosen.enabled)} on: {', '.join(chosen.enabled)}{off}"
    return re.sub(r"^(ok +tools +selection +)\d+ on: .*$", lambda m: m.group(1) + on, text, flags=re.MULTILINE)


async def derived(version: str) -> dict[Path, str]:
    """Every derived file's text as it should be."""
    wanted = await contracts()
    wanted[MANIFEST] = manifest(version)
    wanted[SERVER_JSON] = server_json(version)
    wanted[README] = await readme()
    return wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is out of date")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the lifespan warns of missing credentials; listing the tools needs none
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wanted = anyio.run(derived, version)
    stale = [path for path in CONTRACTS.glob("*.json") if path not in wanted]  # contracts of tools that are gone
    changed = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    for path in changed + stale:
        print(f"{'out of date' if args.check else 'rewritten'}: {path.relative_to(ROOT)}")
    if not changed and not stale:
        print("every derived file is up to date")
    if args.check:
        sys.exit(1 if changed or stale else 0)
    for path in changed:
        path.write_text(wanted[path])
    for path in stale:
        path.unlink()


if __name__ == "__main__":
    main()
