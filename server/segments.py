"""A value put into an upstream URL path: one rule per kind of id, shared by tools, prompts, resources, clients.

A segment an upstream could read as another route must never leave: `..` and `.` (dot segments, which URL
normalisation resolves), `/`, `?`, `#`, `%` (so neither `%2F` nor `%2e%2e` can be decoded into one by a
gateway), control characters, an empty value and an over-long one. Each kind allows only characters RFC 3986
leaves unreserved, so the value is sent exactly as written. The tools' argument schemas use the same patterns
(`server/tooling/spec.py`), and every client checks again where it builds the path, so a value that came another way
(a completion's context, a resource URI, a setting, an upstream's own answer) is held to the tool's rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.errors import InvalidArguments

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ID_PATTERN = r"^[A-Za-z0-9_-]+$"  # neuroflash's workspace and brand voice ids
# A twin group key may hold dots (keys such as `de.retail`), but never only dots: `.` and `..` are dot segments.
KEY_PATTERN = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
MAX_ID = 100


@dataclass(frozen=True)
class Segment:
    """One kind of path segment: what it is called in an error, its pattern and its longest length."""

    name: str
    pattern: str
    max_length: int = MAX_ID

    def check(self, value: object) -> str:
        """`value`, when it may go into a path as this kind of segment.

        Raises:
            InvalidArguments: anything else; the message names the kind, never the value (it may be 100,000
                characters, or hold control characters), and says that nothing was sent.
        """
        if (
            not isinstance(value, str)
            or not 1 <= len(value) <= self.max_length
            or re.fullmatch(self.pattern.removeprefix("^").removesuffix("$"), value) is None
        ):
            raise InvalidArguments(
                f"That is not a {self.name} ({self.rule}); nothing was sent upstream.",
                details={"fields": [{"field": self.name, "rule": self.rule}]},
            )
        return value

    @property
    def rule(self) -> str:
        if self.pattern == UUID_PATTERN:
            return "a UUID"
        dots = "dots (not only dots), " if self.pattern == KEY_PATTERN else ""
        return f"1 to {self.max_length} letters, digits, {dots}'_' or '-'"


WORKSPACE_ID = Segment("workspace id", ID_PATTERN)
BRAND_VOICE_ID = Segment("brand voice id", ID_PATTERN)
TWIN_GROUP = Segment("twin group key", KEY_PATTERN)
SNAPSHOT_ID = Segment("snapshot id", UUID_PATTERN, 36)


def bounded(value: str, limit: int = 40) -> str:
    """A refused value as an error may quote it: at most `limit` characters, the cut marked."""
    return value if len(value) <= limit else value[:limit] + f"… ({len(value):,} characters)"
