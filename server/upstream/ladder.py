"""One ladder for every upstream: which kind of error an answer's HTTP status means, whoever sent it.

As httpx maps every transport's failures in one table, the statuses are mapped here once: 401 is a refused
credential, 403 and 404 are the room's to name, a 429 is a spent quota or a rate limit (its wait read on the
injected clock), any other 4xx was refused and so not processed, and the rest may have been processed when
the request writes. Each upstream room passes only its `Words`: its codes, messages and hints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from server.errors import CredentialsRejected, RateLimited, UpstreamError, UpstreamRejected, UpstreamUnavailable
from server.httpio import UNSAFE_METHODS, error_body, retry_after
from server.responses import request_id


@dataclass(frozen=True)
class Refusal:
    """One error answer, read once: what every rung and every room's words are made from."""

    response: httpx2.Response
    code: str | None  # the upstream's error code, when it sent one
    message: str  # its words, cleaned and capped; "HTTP <status>" when it said nothing
    request_id: str | None
    now: float  # Unix seconds, from the client's clock: a Retry-After date is read against it
    subject: str | None = None  # what the request named (a workspace, a snapshot), for the room's words

    @classmethod
    def read(cls, response: httpx2.Response, now: float, subject: str | None = None) -> Refusal:
        """The answer's code, words and request id, at `now` (Unix seconds)."""
        code, message = error_body(response)
        return cls(response, code, message, request_id(response), now, subject)

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def said(self) -> str:
        """`, saying: «…»` with the upstream's words, or nothing when it sent only a status (an HTML page)."""
        return f", saying: «{self.message}»" if self.message != f"HTTP {self.status}" else ""

    @property
    def known(self) -> dict[str, Any]:
        """The fields every error from this answer carries: its request id and status."""
        return {"request_id": self.request_id, "status": self.status}


Say = Callable[[Refusal], str]
Rung = Callable[[Refusal], UpstreamError]


def _no_quota(refusal: Refusal) -> UpstreamError | None:
    return None


@dataclass(frozen=True)
class Words:
    """What one upstream says on each rung; the ladder decides which rung an answer is on."""

    scope: str  # the rate limit's scope, as a RateLimited error names it
    wait_s: float  # a 429 that names no usable wait is retried after this long
    unauthorized: Say  # 401
    forbidden: Rung  # 403 with no code of `codes`: what it means is the upstream's (a plan, a right, a limit)
    not_found: Rung  # 404: what was not found is the upstream's to name
    rate_limited: Say  # a 429 that is no spent quota
    rejected: Say  # any other 4xx
    unavailable: Say  # 5xx and anything else
    unauthorized_hint: str | None = None  # None: the error's own default hint
    codes: Mapping[tuple[int, str], Rung] = field(default_factory=dict)  # (status, code): a code it documents
    spent_quota: Callable[[Refusal], UpstreamError | None] = _no_quota  # a 429 read as a spent quota, if it is one


def error_for(response: httpx2.Response, words: Words, *, now: float, subject: str | None = None) -> UpstreamError:
    """The error an answer that is not a success means: by status first, a known code only refines it.

    `now` is the client's clock (Unix seconds); `subject` is what the request named, for the room's words.
    """
    refusal = Refusal.read(response, now, subject)
    status = refusal.status
    known = words.codes.get((status, refusal.code or ""))
    if known is not None:
        return known(refusal)
    if status == 401:
        return CredentialsRejected(words.unauthorized(refusal), hint=words.unauthorized_hint, **refusal.known)
    if status == 403:
        return words.forbidden(refusal)
    if status == 404:
        return words.not_found(refusal)
    if status == 429:
        return words.spent_quota(refusal) or RateLimited(
            words.rate_limited(refusal),
            scope=words.scope,
            retry_after_s=retry_after(response, now) or words.wait_s,
            **refusal.known,
        )
    if 400 <= status < 500:  # refused, so not processed: never "maybe processed", never "retry as is"
        return UpstreamRejected(words.rejected(refusal), **refusal.known)
    return UpstreamUnavailable(
        words.unavailable(refusal), maybe_processed=response.request.method in UNSAFE_METHODS, **refusal.known
    )
