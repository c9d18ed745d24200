"""How big a credential's shared window document grows: every decision reads it and most rewrite it whole.

A busy window is built by the pure steps as the store-work benchmark fills it (200 snapshots under 20 per 2 s):
its whole budget in flight, sent within one second, one bucket's report, and the head of every other replica
waiting with its ticket. Each send then holds a reservation and a time of the last second; the bucket's name,
40 bytes, is written once, not with every send or in every report.
"""

from __future__ import annotations

import pytest

from server.scheduler.admit import Asker, Send, decide
from server.scheduler.settle import Answer, settle
from server.scheduler.window import Window
from server.state.store import Doc, encode

START = 1_796_583_710.123457  # a real clock's time, with its microseconds
SNAPSHOTS = "POST /neuralsnap/api/v1/snapshots"
LIMIT, RESET = 20, int(START) + 2  # 20 per 2 s


def _step(doc: Doc | None, written: object) -> Doc | None:
    return written if isinstance(written, dict) else doc


def busy_document(replicas: int, buckets: tuple[str, ...] = (SNAPSHOTS,)) -> Doc:
    """A window of 20 per 2 s with its whole budget sent and in flight, and one call of each other replica waiting."""
    doc: Doc | None = None
    now = START
    for n, bucket in enumerate(buckets):  # each bucket's first answer (of one budget): the limit, its report
        probe = f"{n:016x}"
        doc = _step(doc, decide(doc, now, Asker(probe, now, True, False, 0, 6.0, bucket=bucket)).doc)
        now += 0.004
        left = str(LIMIT - 1 - n)
        headers = {"x-ratelimit-limit": str(LIMIT), "x-ratelimit-remaining": left, "x-ratelimit-reset": str(RESET)}
        answer = Answer.from_headers(probe, True, headers, status=201, bucket=bucket, in_period=1, in_second=1)
        doc = _step(doc, settle(doc, now, answer).doc)
    sent = 0
    for n in range(LIMIT - len(buckets)):
        now += 0.0131
        asker = Asker(f"{n + 100:016x}", now - 0.4, True, False, 0, 6.0, bucket=buckets[n % len(buckets)])
        change = decide(doc, now, asker)
        sent += isinstance(change.result[0], Send)
        doc = _step(doc, change.doc)
    assert sent == LIMIT - len(buckets)
    for n in range(replicas - 1):
        now += 0.0017
        asker = Asker(f"{n + 900:016x}", now - 0.3, True, False, 3, 6.0, bucket=buckets[n % len(buckets)])
        doc = _step(doc, decide(doc, now, asker).doc)
    assert doc is not None
    return doc


def size(doc: Doc) -> int:
    """Bytes as the store keeps it."""
    return len(encode(doc))


@pytest.mark.parametrize(
    ("replicas", "buckets", "most"),
    [
        (1, (SNAPSHOTS,), 1_650),  # 2,334 bytes before each send stopped naming its bucket, and reports their fields
        # 4,143 bytes before; 31 waiting tickets are 2.1 KB of it, with each call's start tag and principal (fair
        # queuing: 0.27 KB), which the decision between principals reads
        (32, (SNAPSHOTS,), 3_700),
    ],
)
def test_a_busy_window_document_stays_small(replicas: int, buckets: tuple[str, ...], most: int) -> None:
    doc = busy_document(replicas, buckets)
    window = Window.load(doc, START + 1)
    assert (window.in_flight, len(window.waiting), window.remaining) == (LIMIT - len(buckets), replicas - 1, 0)
    assert size(doc) <= most
