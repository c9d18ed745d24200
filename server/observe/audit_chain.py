"""The audit log's record and keyed chain: one line's exact form, its hashes, and the check of a file set.

Each line is a JSON object with the keys of `KEYS`, in that order, written compactly (`line`). Its `hash` is
an HMAC-SHA256, under a key derived from the audit key, of its `prev` and the line as written without `hash`;
`prev` is the previous line's `hash` (null on the very first line). Whoever can write the file but cannot
read the key cannot recompute a changed line's hash, nor those after it. Arguments are never written: only
`args_hmac`, an HMAC of their canonical JSON under a second derived key, so equal arguments can be matched
by whoever holds the key, and guessed by nobody else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEYS = (
    "time",
    "principal",
    "method",
    "tool",
    "account",
    "outcome",
    "request_ids",
    "words",
    "wait_s",
    "args_hmac",
    "prev",
    "hash",
)


class Keys:
    """The two keys derived from the audit key: one seals the chain, one hashes arguments."""

    def __init__(self, secret: str) -> None:
        root = secret.encode()
        self._chain = hmac.new(root, b"flashsnap-mcp audit chain v1", hashlib.sha256).digest()
        self._args = hmac.new(root, b"flashsnap-mcp audit arguments v1", hashlib.sha256).digest()

    def args_hmac(self, arguments: Mapping[str, Any] | None) -> str | None:
        """The HMAC of the arguments' canonical JSON (sorted keys, no spaces); None when there are none."""
        if arguments is None:
            return None
        canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
        return hmac.new(self._args, canonical.encode(), hashlib.sha256).hexdigest()

    def seal(self, prev: str | None, unsealed: str) -> str:
        """The `hash` of a line: an HMAC over `prev` and the line as written without `hash`."""
        return hmac.new(self._chain, f"{prev or ''}\n{unsealed}".encode(), hashlib.sha256).hexdigest()


def _dump(record: Mapping[str, Any]) -> str:
    return json.dumps({k: record[k] for k in KEYS if k in record}, separators=(",", ":"), ensure_ascii=True)


def line(keys: Keys, record: Mapping[str, Any], prev: str | None) -> tuple[str, str]:
    """The sealed line of `record` (every key of `KEYS` but `prev` and `hash`) after `prev`, and its hash."""
    unsealed = {**{k: record.get(k) for k in KEYS[:-2]}, "prev": prev}
    digest = keys.seal(prev, _dump(unsealed))
    return _dump({**unsealed, "hash": digest}) + "\n", digest


def last_record(tail: str) -> dict[str, Any] | None:
    """The last whole line of `tail` (a file's end) that is a record; None when none is.

    Half a line (a crash mid-write) is passed over: a restarted writer chains to the last record it can read.
    """
    for raw in reversed(tail.split("\n")[:-1]):  # what follows the last end of line was cut short
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("hash"), str):
            return record
    return None


@dataclass(frozen=True)
class Broken:
    """Where a chain first fails: the file, the line number (1-based), and why."""

    path: Path
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.why}"


def _check_line(keys: Keys, raw: str, prev: str | None) -> tuple[str | None, str]:
    """(the reason this line is broken or None, its hash)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return "not a JSON record (changed, or cut short)", ""
    if not isinstance(record, dict) or list(record) != list(KEYS):
        return "not a record of this log's keys (changed)", ""
    digest = record["hash"]
    if _dump(record) + "\n" != raw + "\n":
        return "not as written (changed)", str(digest)
    if record["prev"] != prev:
        return "does not follow the line before it (a line was dropped, moved or changed before it)", str(digest)
    unsealed = _dump({k: record[k] for k in KEYS[:-1]})
    if not isinstance(digest, str) or not hmac.compare_digest(digest, keys.seal(prev, unsealed)):
        return "its hash does not match (changed, or written without the key)", digest
    return None, digest


def verify(keys: Keys, paths: Iterable[Path], *, partial: bool = False) -> tuple[int, Broken | None]:
    """Check the chain through `paths` in order: (records checked, the first broken line or None).

    The first record must start the chain (`prev` null) unless `partial`: then it is trusted to follow a file
    that is no longer there, and the chain is checked from it on.
    """
    prev: str | None = None
    checked = 0
    for path in paths:
        with path.open(encoding="utf-8", errors="replace", newline="\n") as lines:
            for number, raw in enumerate(lines, start=1):
                if not raw.endswith("\n"):
                    return checked, Broken(path, number, "cut short (no end of line)")
                raw = raw[:-1]
                if checked == 0 and partial:
                    try:
                        prev = json.loads(raw).get("prev")
                    except (ValueError, AttributeError):
                        prev = None
                why, digest = _check_line(keys, raw, prev)
                if why is not None:
                    return checked, Broken(path, number, why)
                prev, checked = digest, checked + 1
    return checked, None
