"""`flashsnap-mcp audit verify`: check an audit file, or a rotated set in order, against its keyed chain.

Exit 0: every record is as written, each follows the one before it, and each hash was made with the key.
Exit 1: the first line that is not (changed, dropped, moved, cut short, or written without the key) is named.
Exit 2: the files or the key cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from server.config import Settings
from server.errors import ConfigurationError
from server.observe.audit_chain import Keys, verify
from server.runtime import AUDIT_KEY_FILE
from server.state.opening import default_state_dir

PROG = "flashsnap-mcp audit"
EPILOG = """the key, in this order: --key-file, FLASHSNAP_AUDIT_KEY, else the key the server made in its state
directory (FLASHSNAP_STATE_DIR, default the user cache directory): run it as the server's user.

examples:
  flashsnap-mcp audit verify /var/log/flashsnap/audit.jsonl
  flashsnap-mcp audit verify audit.20261205T000000Z-000.jsonl audit.jsonl     a rotated set, oldest first
  flashsnap-mcp audit verify --partial audit.20261206T000000Z-000.jsonl    from a file whose elders are gone"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check the audit log's keyed chain.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check one audit file, or a rotated set in order (oldest first)")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    check.add_argument("--key-file", type=Path, help="a file holding the audit key (its first line)")
    check.add_argument(
        "--partial", action="store_true", help="the first record follows a file no longer given: trust its prev"
    )
    return parser.parse_args(argv)


def secret(key_file: Path | None) -> str:
    """The audit key, found as the server finds it, without ever making one.

    Raises:
        ConfigurationError: no key is set or kept, or its file cannot be read.
    """
    if key_file is None:
        settings = Settings.from_env(os.environ)
        if settings.audit_key is not None:
            return settings.audit_key.get_secret_value()
        key_file = (settings.state_dir or default_state_dir()) / AUDIT_KEY_FILE
    try:
        found = key_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"no audit key: {key_file}: {exc.strerror}; set FLASHSNAP_AUDIT_KEY") from None
    if not found:
        raise ConfigurationError(f"no audit key: {key_file} is empty")
    return found


def main(argv: Sequence[str]) -> None:
    """Run `flashsnap-mcp audit verify …`.

    Raises:
        SystemExit: 0 intact, 1 naming the first broken line, 2 when a file or the key cannot be read.
    """
    args = parse_args(argv)
    missing = [str(p) for p in args.paths if not p.is_file()]
    if missing:
        print(f"{PROG}: no such audit file: {', '.join(missing)}", file=sys.stderr)  # noqa: T201 - a command's answer
        raise SystemExit(2)
    try:
        checked, broken = verify(Keys(secret(args.key_file)), args.paths, partial=args.partial)
    except (ConfigurationError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
    if broken is not None:
        print(f"broken: {broken} ({checked} records before it are intact)")  # noqa: T201
        raise SystemExit(1)
    print(f"intact: {checked} records in {len(args.paths)} file(s)")  # noqa: T201
    raise SystemExit(0)
