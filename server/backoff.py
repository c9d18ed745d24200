"""Exponential backoff with full jitter, with the random source injectable for tests."""

from __future__ import annotations

import random
from collections.abc import Callable


def full_jitter(
    attempt: int,
    *,
    base_s: float = 0.5,
    cap_s: float = 30.0,
    rand: Callable[[], float] = random.random,  # noqa: S311 - jitter, not a secret
) -> float:
    """The wait before retry number `attempt` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling: float = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return rand() * ceiling
