"""The NeuralSnap API client: create, search and fetch snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx2
from pydantic import BaseModel

from server.clock import Clock, SystemClock
from server.errors import NotFound, PermissionDenied, QuotaExhausted, UpstreamError
from server.httpio import spent_quota
from server.neuralsnap.wire import (
    Crystallized,
    Profile,
    SavedSnapshot,
    SearchHit,
    Snapshot,
    SnapshotChanges,
    SnapshotFields,
    read_saved,
    whole,
)
from server.responses import parse, send
from server.segments import SNAPSHOT_ID
from server.upstream.ladder import Refusal, Words, error_for

SERVICE = "NeuralSnap"


class _One(BaseModel):
    data: Snapshot


class _Many(BaseModel):
    data: list[SearchHit]
    count: int | None = None


class _Crystal(BaseModel):
    snapshots: list[Snapshot] = []
    count: int | None = None


class _Usage(BaseModel):
    totalTokensIn: int | None = None
    totalTokensOut: int | None = None
    totalTokens: int | None = None


class _CrystalAnswer(BaseModel):
    data: _Crystal
    usage: _Usage = _Usage()


class _ProfileAnswer(BaseModel):
    data: Profile


class _VerbRefused(Exception):
    """PATCH answered 404 or 405: the verb may not be the one this NeuralSnap implements."""


UPDATE_VERBS = ("PATCH", "PUT")


class NeuralSnapClient:
    """Typed methods over one shared `httpx2.AsyncClient` that carries the API key.

    The pages do not say whether an update is a PATCH or a PUT. An update is sent as a PATCH of the fields
    asked for; a 404 or 405 to it reads the snapshot and PUTs the whole of it with the changes, so no field
    is lost whichever verb the service implements. The verb that worked is remembered for the process.
    """

    def __init__(self, http: httpx2.AsyncClient, clock: Clock | None = None) -> None:
        self._http = http
        self._clock = clock or SystemClock()
        self.update_verb: str | None = None  # the verb an update last worked with

    async def create(self, fields: SnapshotFields, brain_id: str | None = None) -> SavedSnapshot:
        """Create one snapshot; an answer of an unexpected shape still reports it saved (see `read_saved`).

        Raises:
            UpstreamError: NeuralSnap refused the request or failed (the subclass says how; see `WORDS`).
            UpstreamUnavailable: no answer came; `maybe_processed` says whether it may have been saved.
        """
        body = fields.model_dump(exclude_none=True) | ({"brain_id": brain_id} if brain_id else {})
        response = await self._send("POST", "/snapshots", json=body)
        return read_saved(response.content, fields, response.status_code)

    async def search(self, query: str, limit: int, brain_id: str | None = None) -> list[SearchHit]:
        """Snapshots that match `query`, best first.

        Raises:
            UpstreamError: NeuralSnap refused or failed the search, or answered what cannot be read.
        """
        params: dict[str, Any] = {"q": query, "limit": limit} | ({"brain_id": brain_id} if brain_id else {})
        response = await self._send("GET", "/snapshots/search", params=params)
        return parse(_Many, response, what=SERVICE).data

    async def recent(
        self, limit: int, offset: int = 0, brain_id: str | None = None
    ) -> tuple[list[SearchHit], int | None]:
        """One page of the newest snapshots, and how many there are (None when not said).

        Raises:
            UpstreamError: NeuralSnap refused or failed the listing, or answered what cannot be read.
        """
        params: dict[str, Any] = {"limit": limit, "offset": offset} | ({"brain_id": brain_id} if brain_id else {})
        response = await self._send("GET", "/snapshots", params=params)
        page = parse(_Many, response, what=SERVICE)
        return page.data, page.count

    async def update(self, snapshot_id: str, changes: SnapshotChanges) -> Snapshot:
        """Change the fields of `changes`, keeping every other: PATCH, else (404/405) read and PUT the whole.

        Raises:
            NotFound: no snapshot has that id.
            UpstreamError: NeuralSnap refused or failed the update (the subclass says how; see `WORDS`).
        """
        path = f"/snapshots/{SNAPSHOT_ID.check(snapshot_id)}"
        if self.update_verb != "PUT":
            try:
                response = await self._send("PATCH", path, json=changes.body(), not_found=snapshot_id, verb=True)
            except _VerbRefused:
                pass
            else:
                self.update_verb = "PATCH"
                return parse(_One, response, what=SERVICE).data
        current = await self.get(snapshot_id)
        response = await self._send("PUT", path, json=whole(current, changes), not_found=snapshot_id)
        self.update_verb = "PUT"
        return parse(_One, response, what=SERVICE).data

    async def delete(self, snapshot_id: str) -> None:
        """Delete one snapshot.

        Raises:
            NotFound: no snapshot has that id (it may be deleted already).
            UpstreamError: NeuralSnap refused or failed the request.
        """
        await self._send("DELETE", f"/snapshots/{SNAPSHOT_ID.check(snapshot_id)}", not_found=snapshot_id)

    async def crystallize(self, body: dict[str, Any]) -> Crystallized:
        """Turn a text into snapshots; sent once, never repeated (it spends the monthly crystallize tokens).

        Raises:
            QuotaExhausted: the monthly crystallize quota is spent, with its renewal date.
            UpstreamError: NeuralSnap refused or failed it; `maybe_processed` when it may have run.
        """
        response = await self._send("POST", "/crystallize", json=body)
        answer = parse(_CrystalAnswer, response, what=SERVICE)
        usage = answer.usage
        return Crystallized(
            snapshots=answer.data.snapshots,
            count=answer.data.count if answer.data.count is not None else len(answer.data.snapshots),
            tokens_in=usage.totalTokensIn,
            tokens_out=usage.totalTokensOut,
            tokens=usage.totalTokens,
        )

    async def profile(self) -> Profile:
        """The account's plan and limits.

        Raises:
            PermissionDenied: the plan has no API access (Starter answers 403).
            UpstreamError: any other refusal or failure.
        """
        return parse(_ProfileAnswer, await self._send("GET", "/profile"), what=SERVICE).data

    async def get(self, snapshot_id: str) -> Snapshot:
        """One snapshot by id.

        Raises:
            NotFound: no snapshot has that id.
            UpstreamError: NeuralSnap refused or failed the request, or answered what cannot be read.
        """
        response = await self._send("GET", f"/snapshots/{SNAPSHOT_ID.check(snapshot_id)}", not_found=snapshot_id)
        return parse(_One, response, what=SERVICE).data

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        not_found: str | None = None,
        verb: bool = False,
    ) -> httpx2.Response:
        def raise_for(response: httpx2.Response) -> NoReturn:
            if verb and response.status_code in (404, 405):
                raise _VerbRefused
            raise error_for(response, WORDS, now=self._clock.now(), subject=not_found)

        return await send(self._http, method, path, service=SERVICE, raise_for=raise_for, json=json, params=params)


def quota_of(path: str) -> str:
    """Which monthly quota a request to `path` spends: searches, crystallize tokens, or plain requests."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return {"search": "search", "crystallize": "crystallize"}.get(last, "requests")


def _forbidden(r: Refusal) -> UpstreamError:
    return PermissionDenied(
        f"NeuralSnap accepted the API key but refused this request, saying: «{r.message}». A valid key is "
        "refused when the account's plan has no API access (Starter) or the key lacks the permission.",
        hint="Ask the user to move to a NeuralSnap plan with API access (Pro or Business), or to create "
        "a key with this permission and set it as NEURALSNAP_API_KEY; retrying will not help.",
        details={"upstream_code": r.code} if r.code else None,
        **r.known,
    )


def _not_found(r: Refusal) -> UpstreamError:
    return NotFound(
        f"There is no snapshot with id {r.subject!r}."
        if r.subject
        else f"NeuralSnap answered 404, saying: «{r.message}»",
        hint="Use search_snapshots to find the snapshot's id.",
        **r.known,
    )


def _spent_quota(r: Refusal) -> UpstreamError | None:
    """A 429 whose wait is longer than any rate-limit window: a monthly quota is spent, with its renewal."""
    verdict = spent_quota(r.response, r.now)
    if verdict is None:
        return None
    quota = quota_of(r.response.request.url.path)
    renews = datetime.fromtimestamp(verdict.renews_at, UTC)
    return QuotaExhausted(
        f"NeuralSnap's monthly {quota} quota is spent, saying: «{r.message}». "
        f"It renews at {renews.isoformat(timespec='seconds')} (the next billing cycle).",
        period="monthly",
        resets_at=renews,
        hint="Do not retry before it renews, nor wait for it: until then NeuralSnap refuses every "
        f"{'search' if quota == 'search' else 'such request'}. Nothing was processed.",
        details={"quota": quota},
        **r.known,
    )


# NeuralSnap's words on the one ladder: a 403 is a plan or a key's permission, a 404 a snapshot, a long 429 a quota.
WORDS = Words(
    scope="neuralsnap",
    wait_s=60.0,
    unauthorized=lambda r: "NeuralSnap rejected the API key.",
    unauthorized_hint="Check NEURALSNAP_API_KEY (it must be a live or test key that is not revoked); "
    "retrying will not help.",
    forbidden=_forbidden,
    not_found=_not_found,
    rate_limited=lambda r: "NeuralSnap's rate limit is reached.",
    rejected=lambda r: f"NeuralSnap rejected the request, saying: «{r.message}»",
    unavailable=lambda r: f"NeuralSnap answered HTTP {r.status}, saying: «{r.message}».",
    spent_quota=_spent_quota,
)
