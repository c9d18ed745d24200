"""The NeuralSnap API client: create, search and fetch snapshots."""

from __future__ import annotations

import time
from typing import Any, NoReturn
from urllib.parse import quote

import httpx2
from pydantic import BaseModel

from server.errors import CredentialsRejected, NotFound, RateLimited, UpstreamRejected, UpstreamUnavailable
from server.httpio import UNSAFE_METHODS, error_body, retry_after
from server.neuralsnap.wire import SearchHit, Snapshot, SnapshotFields
from server.responses import parse, send

SERVICE = "NeuralSnap"


class _One(BaseModel):
    data: Snapshot


class _Many(BaseModel):
    data: list[SearchHit]
    count: int | None = None


class NeuralSnapClient:
    """Typed methods over one shared `httpx2.AsyncClient` that carries the API key."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self._http = http

    async def create(self, fields: SnapshotFields) -> Snapshot:
        response = await self._send("POST", "/snapshots", json=fields.model_dump(exclude_none=True))
        return parse(_One, response, what=SERVICE).data

    async def search(self, query: str, limit: int) -> list[SearchHit]:
        response = await self._send("GET", "/snapshots/search", params={"q": query, "limit": limit})
        return parse(_Many, response, what=SERVICE).data

    async def recent(self, limit: int, offset: int = 0) -> tuple[list[SearchHit], int | None]:
        response = await self._send("GET", "/snapshots", params={"limit": limit, "offset": offset})
        page = parse(_Many, response, what=SERVICE)
        return page.data, page.count

    async def get(self, snapshot_id: str) -> Snapshot:
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
            raise_for=lambda response: _raise_for(response, not_found),
            json=json,
            params=params,
        )


def _raise_for(response: httpx2.Response, snapshot_id: str | None) -> NoReturn:
    _, message = error_body(response)
    status = response.status_code
    if status == 401:
        raise CredentialsRejected(
            "NeuralSnap rejected the API key.",
            hint="Check NEURALSNAP_API_KEY (it must be a live or test key that is not revoked); "
            "retrying will not help.",
            status=status,
        )
    if status == 404:
        raise NotFound(
            f"There is no snapshot with id {snapshot_id!r}."
            if snapshot_id
            else f"NeuralSnap answered 404, saying: «{message}»",
            hint="Use search_snapshots to find the snapshot's id.",
            status=status,
        )
    if status == 429:
        raise RateLimited(
            "NeuralSnap's hourly rate limit is reached.",
            scope="neuralsnap",
            retry_after_s=retry_after(response, time.time()) or 60.0,
            status=status,
        )
    if 400 <= status < 500:  # refused, so not processed
        raise UpstreamRejected(f"NeuralSnap rejected the request, saying: «{message}»", status=status)
    raise UpstreamUnavailable(
        f"NeuralSnap answered HTTP {status}, saying: «{message}».",
        status=status,
        maybe_processed=response.request.method in UNSAFE_METHODS,
    )
