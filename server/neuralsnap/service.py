"""The NeuralSnap service the tools call: save, search, read and list the snapshots of the user's brain."""

from __future__ import annotations

from dataclasses import dataclass

from server.neuralsnap.client import NeuralSnapClient
from server.neuralsnap.wire import SavedSnapshot, SearchHit, Snapshot, SnapshotFields


@dataclass
class NeuralSnapService:
    """NeuralSnap as the tools see it; one per process, opened by the runtime.

    Every request passes the API key's gate in the scheduling transport below the client, and a
    request that creates data is never repeated automatically.
    """

    client: NeuralSnapClient

    async def save(self, fields: SnapshotFields) -> SavedSnapshot:
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
        return await self.client.create(fields)

    async def search(self, query: str, limit: int) -> list[SearchHit]:
        """Up to `limit` snapshots that match `query` by meaning, best first.

        Raises:
            RateLimited: no room in the rate limit within the call's wait budget.
            QuotaExhausted: the monthly search quota is spent; `resets_at` says when it renews.
            PermissionDenied: the key's plan or permissions do not allow searching.
            FlashsnapError: any other failure (its subclass says which).
        """
        return await self.client.search(query, limit)

    async def get(self, snapshot_id: str) -> Snapshot:
        """One snapshot by id.

        Raises:
            NotFound: no snapshot has that id in this brain.
            FlashsnapError: any other failure (its subclass says which).
        """
        return await self.client.get(snapshot_id)

    async def recent(self, limit: int, offset: int = 0) -> tuple[list[SearchHit], int | None]:
        """The newest snapshots from `offset` on, and how many the brain holds (None when not said).

        Raises:
            FlashsnapError: the listing failed (its subclass says why).
        """
        return await self.client.recent(limit, offset)
