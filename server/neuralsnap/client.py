"""The NeuralSnap API client: create, search and fetch snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import quote

import httpx2
from pydantic import BaseModel

from server.clock import Clock, SystemClock
from server.errors import (
    CredentialsRejected,
    NotFound,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from server.httpio import UNSAFE_METHODS, error_body, retry_after, spent_quota
from server.neuralsnap.wire import SavedSnapshot, SearchHit, Snapshot, SnapshotFields, read_saved
from server.responses import parse, request_id, send

SERVICE = "NeuralSnap"


class _One(BaseModel):
    data: Snapshot


class _Many(BaseModel):
    data: list[SearchHit]
    count: int | None = None


class NeuralSnapClient:
    """Typed methods over one shared `httpx2.AsyncClient` that carries the API key."""

    def __init__(self, http: httpx2.AsyncClient, clock: Clock | None = None) -> None:
        self._http = http
        self._clock = clock or SystemClock()

    async def create(self, fields: SnapshotFields) -> SavedSnapshot:
        """Create one snapshot; an answer of an unexpected shape still reports it saved (see `read_saved`).

        Raises:
            UpstreamError: NeuralSnap refused the request or failed (the subclass says how; see `_raise_for`).
            UpstreamUnavailable: no answer came; `maybe_processed` says whether it may have been saved.
        """
        response = await self._send("POST", "/snapshots", json=fields.model_dump(exclude_none=True))
        return read_saved(response.content, fields, response.status_code)

    async def search(self, query: str, limit: int) -> list[SearchHit]:
        """Snapshots that match `query`, best first.

        Raises:
            UpstreamError: NeuralSnap refused or failed the search, or answered what cannot be read.
        """
        response = await self._send("GET", "/snapshots/search", params={"q": query, "limit": limit})
        return parse(_Many, response, what=SERVICE).data

    async def recent(self, limit: int, offset: int = 0) -> tuple[list[SearchHit], int | None]:
        """One page of the newest snapshots, and how many there are (None when not said).

        Raises:
            UpstreamError: NeuralSnap refused or failed the listing, or answered what cannot be read.
        """
        response = await self._send("GET", "/snapshots", params={"limit": limit, "offset": offset})
        page = parse(_Many, response, what=SERVICE)
        return page.data, page.count

    async def get(self, snapshot_id: str) -> Snapshot:
        """One snapshot by id.

        Raises:
            NotFound: no snapshot has that id.
            UpstreamError: NeuralSnap refused or failed the request, or answered what cannot be read.
        """
        response = await self._send("GET", f"/snapshots/{quote(snapshot_id, safe='')}", not_found=snapshot_id)
        return parse(_One, response, what=SERVICE).data

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        not_found: str | None = None,
    ) -> httpx2.Response:
        return await send(
            self._http,
            method,
            path,
            service=SERVICE,
            raise_for=lambda response: _raise_for(response, not_found, self._clock.now()),
            json=json,
            params=params,
        )


def quota_of(path: str) -> str:
    """Which monthly quota a request to `path` spends: searches, crystallize tokens, or plain requests."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return {"search": "search", "crystallize": "crystallize"}.get(last, "requests")


def _raise_for(response: httpx2.Response, snapshot_id: str | None, now: float) -> NoReturn:
    """The error an answer that is not a success means.

    Raises:
        CredentialsRejected: 401, the key is refused.
        PermissionDenied: 403, the key is valid but its plan or permissions do not allow the call.
        NotFound: 404.
        QuotaExhausted: a 429 whose wait is longer than any rate-limit window: a monthly quota is spent.
        RateLimited: any other 429.
        UpstreamRejected: any other 4xx (not processed).
        UpstreamUnavailable: 5xx or anything else; `maybe_processed` for a write.
    """
    code, message = error_body(response)
    status = response.status_code
    rid = request_id(response)
    if status == 401:
        raise CredentialsRejected(
            "NeuralSnap rejected the API key.",
            hint="Check NEURALSNAP_API_KEY (it must be a live or test key that is not revoked); "
            "retrying will not help.",
            status=status,
            request_id=rid,
        )
    if status == 403:
        raise PermissionDenied(
            f"NeuralSnap accepted the API key but refused this request, saying: «{message}». A valid key is "
            "refused when the account's plan has no API access (Starter) or the key lacks the permission.",
            hint="Ask the user to move to a NeuralSnap plan with API access (Pro or Business), or to create "
            "a key with this permission and set it as NEURALSNAP_API_KEY; retrying will not help.",
            status=status,
            request_id=rid,
            details={"upstream_code": code} if code else None,
        )
    if status == 404:
        raise NotFound(
            f"There is no snapshot with id {snapshot_id!r}."
            if snapshot_id
            else f"NeuralSnap answered 404, saying: «{message}»",
            hint="Use search_snapshots to find the snapshot's id.",
            status=status,
            request_id=rid,
        )
    if status == 429:
        verdict = spent_quota(response, now)
        if verdict is not None:
            quota = quota_of(response.request.url.path)
            renews = datetime.fromtimestamp(verdict.renews_at, UTC)
            raise QuotaExhausted(
                f"NeuralSnap's monthly {quota} quota is spent, saying: «{message}». "
                f"It renews at {renews.isoformat(timespec='seconds')} (the next billing cycle).",
                period="monthly",
                resets_at=renews,
                hint="Do not retry before it renews, nor wait for it: until then NeuralSnap refuses every "
                f"{'search' if quota == 'search' else 'such request'}. Nothing was processed.",
                status=status,
                request_id=rid,
                details={"quota": quota},
            )
        raise RateLimited(
            "NeuralSnap's rate limit is reached.",
            scope="neuralsnap",
            retry_after_s=retry_after(response, now) or 60.0,
            status=status,
            request_id=rid,
        )
    if 400 <= status < 500:  # refused, so not processed
        raise UpstreamRejected(f"NeuralSnap rejected the request, saying: «{message}»", status=status, request_id=rid)
    raise UpstreamUnavailable(
        f"NeuralSnap answered HTTP {status}, saying: «{message}».",
        status=status,
        request_id=rid,
        maybe_processed=response.request.method in UNSAFE_METHODS,
    )
