"""Which budget a request spends: one per credential until the answers show an endpoint has its own.

NeuralSnap's pages disagree: one budget per key, or one per key and endpoint. So every request names
its bucket (its method and route, ids left out), and all buckets start out sharing the credential's
window, the safe assumption. Two kinds of evidence split a bucket off into a window of its own:

- its answer names another limit than another bucket's last report of the window; or
- its answer counts fewer sends than one shared budget must have: another bucket's report of `r0`
  remaining, taken in before this request was sent, in the same window, means this request was
  counted after that one, leaving at most `r0 - 1`. As many left or more means this bucket's count
  never saw that bucket's sends.

Other processes' sends only lower a count, so neither can be faked by them; a split wrongly made
(a rolling window that freed a send) costs at most the pessimistic reading every window already
takes of a count lower than its own, and the verdict lives no longer than the window document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    answers_at: int  # the window's count of answers once this one was taken in


def shows_own_budget(
    reports: Iterable[Report], bucket: str, remaining: int, reset_at: float, limit: int | None, answers_at_send: int
) -> bool:
    """Whether an answer of `bucket` proves it does not spend the shared window (see the module docstring).

    `reports`: each bucket's last report of the window; `answers_at_send`: the window's count of answers
    when this request was let out (a report taken in after that says nothing of this request's order).
    """
    for other in reports:
        if other.bucket == bucket:
            continue
        if limit is not None and other.limit is not None and limit != other.limit:
            return True
        settled_before = other.answers_at <= answers_at_send
        if settled_before and abs(reset_at - other.reset_at) <= 0.5 and remaining >= other.remaining:
            return True
    return False


def latest(reports: dict[str, Report], report: Report, keep: int = 16) -> dict[str, Report]:
    """`reports` with `report` as its bucket's last, the `keep` most recent buckets at most."""
    merged = {**reports, report.bucket: report}
    return dict(sorted(merged.items(), key=lambda kv: (kv[1].answers_at, kv[0]))[-keep:])
