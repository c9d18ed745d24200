"""The README's links lead somewhere inside the repository, its settings are the code's, and the contract is current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.config import ENVIRONMENT
from server.sandbox.variants import PROFILES

ROOT = Path(__file__).parent.parent
SHARED_CONTRACT = ROOT.parent / "shared" / "upstream-contract.md"
NOTE = re.compile(r"\n> A copy, kept in this repository.*?are both held to\.\n", re.DOTALL)


def test_every_relative_link_in_the_readme_resolves_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = {m.group(1).split("#")[0] for m in re.finditer(r"\]\(([^)\s]+)\)", readme)}
    local = {t for t in targets if t and not t.startswith(("http://", "https://", "mailto:"))}
    assert "docs/upstream-contract.md" in local
    for target in local:
        resolved = (ROOT / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} points outside the repository"
        assert resolved.exists(), f"{target} does not exist"


@pytest.mark.skipif(not SHARED_CONTRACT.exists(), reason="no shared contract beside this checkout to compare with")
def test_the_shipped_upstream_contract_is_the_shared_one() -> None:
    shipped = NOTE.sub("", (ROOT / "docs" / "upstream-contract.md").read_text(), count=1)
    assert shipped == SHARED_CONTRACT.read_text(), (
        "docs/upstream-contract.md differs from ../shared/upstream-contract.md: copy it again"
    )


def test_every_sandbox_profile_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in PROFILES if f"`{name}`" not in readme]
    assert not missing, f"README's sandbox profiles leave out {missing}"


def test_the_configuration_table_lists_every_setting_and_only_settings() -> None:
    """The table in the README and the fields of `Settings` name the same variables; a new field needs its row."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## Check the setup")]
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    named = {var for row in rows for var in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    emulator_only = {"FLASHSNAP_SANDBOX_PROFILE"}  # read by the emulator (server/sandbox), not a server setting
    assert named - emulator_only == {var for var, _, _ in ENVIRONMENT}
