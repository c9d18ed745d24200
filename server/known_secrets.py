"""The secret values this process holds (its configured credentials and the live tokens it was given), masked by
value in every text that leaves it: results, errors, logs, stored failure texts, `status` and `check`.

A pattern cannot find a bare token an upstream quotes back, nor a client secret an identity server echoes in an
error: only the value can. The token manager tells this module of each token it gets; the runtime and the
commands tell it of the configured secrets. Kept in the process only, and bounded: the newest `MAX_LIVE` tokens
(a token lives hours and is replaced ahead of expiry, so a handful covers every one still valid).
"""

from __future__ import annotations

import threading
from typing import Any

MASK = "***"
MAX_LIVE = 32  # tokens remembered, newest first out last
MIN_LENGTH = 8  # a shorter value is not masked by value (it would mask ordinary words); patterns still apply

_lock = threading.Lock()
_configured: set[str] = set()
_live: dict[str, None] = {}  # insertion-ordered: the oldest goes first


def hold(*values: str, live: bool = False) -> None:
    """Remember `values` as secrets: configured ones for the life of the process, `live` tokens among the newest."""
    with _lock:
        for value in values:
            if len(value) < MIN_LENGTH:
                continue
            if not live:
                _configured.add(value)
                continue
            _live.pop(value, None)
            _live[value] = None
            while len(_live) > MAX_LIVE:
                del _live[next(iter(_live))]


def mask(text: str) -> str:
    """`text` with every held secret replaced by `***`, the longest first (a token may contain a shorter one)."""
    for value in held():
        if value in text:
            text = text.replace(value, MASK)
    return text


def held() -> list[str]:
    """Every held secret, the longest first."""
    with _lock:
        return sorted((*_configured, *_live), key=len, reverse=True)


def mask_deep(value: Any, values: list[str] | None = None) -> Any:
    """`value` (JSON-shaped: dicts, lists, strings) with every held secret masked in each string; the same object
    when no string holds one."""
    values = held() if values is None else values
    if isinstance(value, str):
        for secret in values:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {key: mask_deep(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_deep(item, values) for item in value]
    return value
