"""Which budget a request spends: one per credential until the answers show an endpoint has its own.

NeuralSnap's pages disagree: one budget per key, or one per key and endpoint. So every request names
its bucket (its method and route, ids left out), and all buckets start out sharing the credential's
window, the safe assumption. Two kinds of evidence split a bucket off into a window of its own:

- its answer names another limit than the shared window's last report; or
- its answer counts fewer sends than one shared budget must have: a report of `r0` remaining, then
  `between` more answers that spent budget, then this request sent and answered in the same window,
  must leave at most `r0 - between - 1`. More left means this bucket's count never saw those sends.

Other processes' sends only lower a count, so neither can be faked by them; a split wrongly made
(a rolling window that freed a send) costs at most the pessimistic reading every window already
takes of a count lower than its own, and the verdict lives no longer than the window document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = re.compile(r"/(?:[0-9a-fA-F]{8}-[0-9a-fA-F-]{27,}|\d+)(?=/|$)")


def bucket_of(method: str, path: str) -> str:
    """A request's bucket: its method and path with ids (UUIDs, numbers) replaced, e.g. `GET /snapshots/{id}`."""
    return f"{method.upper()} {_ID.sub('/{id}', path) or '/'}"


def key_part(bucket: str) -> str:
    """A bucket as a part of a store key: letters, digits and underscores only."""
    return re.sub(r"[^A-Za-z0-9]+", "_", bucket).strip("_").lower() or "root"


@dataclass(frozen=True)
class Report:
    """What one answer said of the shared window: who answered, what was left, until when, of what limit."""

    bucket: str
    remaining: int
    reset_at: float  # Unix seconds
    limit: int | None
    answers_at: int  # the window's count of budget-spending answers once this one was taken in


def shows_own_budget(
    last: Report | None, bucket: str, remaining: int, reset_at: float, limit: int | None, answers_at_send: int
) -> bool:
    """Whether an answer of `bucket` proves it does not spend the shared window (see the module docstring).

    `answers_at_send`: the window's count of budget-spending answers when this request was let out.
    """
    if last is None:
        return False
    if limit is not None and last.limit is not None and limit != last.limit:
        return True
    if answers_at_send < last.answers_at or abs(reset_at - last.reset_at) > 0.5:
        return False  # that report came after this request left, or speaks of another window
    between = answers_at_send - last.answers_at
    return between >= 1 and remaining > last.remaining - between - 1
