"""What a model sees of each tool, pinned: a change to a name, description, schema or annotation must be deliberate.

After an intended change, rewrite the snapshots with `make regenerate` (or `UPDATE_CONTRACTS=1 make pytest`) and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import MODES, Connect

CONTRACTS = Path(__file__).parent / "contracts"


@pytest.mark.parametrize("mode", MODES)
async def test_each_tool_matches_its_committed_contract(connect: Connect, mode: str) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "all"}) as client:
        tools = (await client.list_tools()).tools
    seen = set()
    for tool in tools:
        contract = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
        contract.pop("_meta", None)
        path = CONTRACTS / f"{tool.name}.json"
        text = json.dumps(contract, indent=2, sort_keys=True) + "\n"
        if os.environ.get("UPDATE_CONTRACTS"):
            path.write_text(text)
        assert path.exists(), f"no contract for the new tool {tool.name}: run with UPDATE_CONTRACTS=1"
        assert text == path.read_text(), f"{tool.name} changed what a model sees; see {path}"
        seen.add(path.name)
    assert seen == {p.name for p in CONTRACTS.glob("*.json")}, "a contract is left for a tool that is gone"
