"""`flashsnap-mcp team token NAME`: a new random token for a principal, and the `token_sha256` line to paste."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from server.auth.team import NAME_PATTERN, OTHER
from server.auth.tokens import new_token


def main(argv: Sequence[str]) -> None:
    """Print a new token for NAME (once: the server keeps only its hash) and the team file lines to paste.

    Raises:
        SystemExit: 2 for a name the team file would refuse.
    """
    parser = argparse.ArgumentParser(
        prog="flashsnap-mcp team",
        description="Manage the team file (FLASHSNAP_TEAM_FILE) of a server run with FLASHSNAP_AUTH=tokens.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a new random token for NAME and its token_sha256 line")
    token.add_argument("name", help="the principal's name in the team file")
    args = parser.parse_args(argv)
    if not re.match(NAME_PATTERN, args.name) or args.name == OTHER:
        parser.error(f"NAME must be 1-64 letters, digits or . _ @ + - (not {OTHER!r}): the team file's rule")
    secret, digest = new_token()
    lines = [
        f"# The token for {args.name}: hand it over; the server keeps only its hash, so it is not shown again.",
        f"#   {secret}",
        "# Paste into FLASHSNAP_TEAM_FILE (or replace the token_sha256 of the entry that has this name):",
        "[[principals]]",
        f'name = "{args.name}"',
        f'token_sha256 = "{digest}"',
    ]
    sys.stdout.write("\n".join(lines) + "\n")
