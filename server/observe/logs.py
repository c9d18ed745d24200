"""Logging to stderr only, through a filter that masks anything shaped like a credential."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

from server import known_secrets
from server.observe.backlog import backlog_for

# Shapes of secrets this server handles, masked even when their value is not known up front.
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
    re.compile(r"ns_(?:live|test)_[A-Za-z0-9_\-]+"),
    re.compile(r"(?i)(client_secret=)[^&\s\"']+"),
    re.compile(r"(?i)(\"?(?:access_token|client_secret)\"?\s*[:=]\s*\"?)[^\s\"',}&]+"),
)
MASK = "***"


class SecretMask(logging.Filter):
    """Rewrites each record's message with known secret values and secret-shaped text masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]
        known_secrets.hold(*self._secrets)  # so text masked elsewhere in the process (quotes, stored texts) is too

    def mask(self, text: str) -> str:
        text = known_secrets.mask(text)  # live tokens, and secrets an upstream quoted back in its own words
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.mask(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, masked, so no handler formats the raw one.
            record.exc_text = self.mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure(level: str, secrets: Iterable[str] = ()) -> None:
    """Send every log record to stderr, masked; stdout stays free for the protocol."""
    # Written by a thread through a bounded backlog: a client that never reads stderr never blocks the protocol.
    handler = backlog_for(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Configured again once the settings are read: the mask swapped in one step, never a moment without one.
    handler.filters = [SecretMask(secrets)]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning goes through the same backlog, not straight to stderr
    # httpx2 logs every request line at INFO; keep it at WARNING unless debugging.
    logging.getLogger("httpx2").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
