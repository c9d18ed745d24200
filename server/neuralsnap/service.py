"""The NeuralSnap service the tools call: save, search, read and list the snapshots of the user's brain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.neuralsnap.client import NeuralSnapClient
from server.neuralsnap.wire import (
    Crystallized,
    Profile,
    SavedSnapshot,
    SearchHit,
    Snapshot,
    SnapshotChanges,
    SnapshotFields,
)
from server.scheduler.gate import Gate
from server.state.layout import AccountKeys


@dataclass
class NeuralSnapService:
    """NeuralSnap as the tools see it: one per account and process, opened by `server/neuralsnap/opening.py`.

    Every request passes the API key's gate in the scheduling transport below the client, and a
    request that creates data is never repeated automatically.
    """

    client: NeuralSnapClient
    account: AccountKeys  # which API key this is: its documents in the store
    gate: Gate  # its rate limit, as every request waits for it

    async def save(self, fields: SnapshotFields, brain_id: str | None = None) -> SavedSnapshot:
        """Create one snapshot; sent once, never retried after it may have reached NeuralSnap.

        A success whose answer has an unexpected shape is still a success: the snapshot comes back with
        the fields that could be read and a `note` saying which are shown as sent.

        Raises:
            UpstreamRejected: NeuralSnap refused the snapshot's fields (nothing saved).
            PermissionDenied: the key's plan or permissions do not allow it (nothing saved).
            RateLimited: no room in the rate limit within the call's wait budget (nothing sent).
            QuotaExhausted: a monthly quota is spent (nothing saved).
            FlashsnapError: any other failure; `maybe_processed` says whether it may have been saved.
        """
        return await self.client.create(fields, brain_id)

    async def search(self, query: str, limit: int, brain_id: str | None = None) -> list[SearchHit]:
        """Up to `limit` snapshots that match `query` by meaning, best first.

        Raises:
            RateLimited: no room in the rate limit within the call's wait budget.
            QuotaExhausted: the monthly search quota is spent; `resets_at` says when it renews.
            PermissionDenied: the key's plan or permissions do not allow searching.
            FlashsnapError: any other failure (its subclass says which).
        """
        return await self.client.search(query, limit, brain_id)

    async def get(self, snapshot_id: str) -> Snapshot:
        """One snapshot by id.

        Raises:
            NotFound: no snapshot has that id in this brain.
            FlashsnapError: any other failure (its subclass says which).
        """
        return await self.client.get(snapshot_id)

    async def recent(
        self, limit: int, offset: int = 0, brain_id: str | None = None
    ) -> tuple[list[SearchHit], int | None]:
        """The newest snapshots from `offset` on, and how many the brain holds (None when not said).

        Raises:
            FlashsnapError: the listing failed (its subclass says why).
        """
        return await self.client.recent(limit, offset, brain_id)

    async def update(self, snapshot_id: str, changes: SnapshotChanges) -> Snapshot:
        """Change the fields asked for and keep every other, whichever verb NeuralSnap implements.

        Raises:
            NotFound: no snapshot has that id.
            FlashsnapError: any other failure (its subclass says which).
        """
        return await self.client.update(snapshot_id, changes)

    async def delete(self, snapshot_id: str) -> None:
        """Delete one snapshot.

        Raises:
            NotFound: no snapshot has that id.
            FlashsnapError: any other failure (its subclass says which).
        """
        await self.client.delete(snapshot_id)

    async def crystallize(self, text: str, brain_id: str | None, source_type: str | None) -> Crystallized:
        """Turn a text into snapshots; sent once and never repeated, as it spends monthly crystallize tokens.

        Raises:
            QuotaExhausted: the monthly crystallize quota is spent; `resets_at` says when it renews.
            FlashsnapError: any other failure; `maybe_processed` says whether it may have run.
        """
        body: dict[str, Any] = {"text": text}
        if brain_id:
            body["brain_id"] = brain_id
        if source_type:
            body["source_type"] = source_type
        return await self.client.crystallize(body)

    async def profile(self) -> Profile:
        """The account's plan and limits (one request of the key's budget: `flashsnap-mcp check` asks, not tools).

        Raises:
            PermissionDenied: the plan has no API access (Starter).
            FlashsnapError: any other failure (its subclass says which).
        """
        return await self.client.profile()
