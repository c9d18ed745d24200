"""NeuralSnap's wire models: a snapshot as it is created, stored and found."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SnapshotType = Literal["Belief", "Model", "Rule", "Conviction", "Principle"]


class SnapshotFields(BaseModel):
    """What a client may set on a snapshot (the POST body)."""

    name: str
    core: str
    type: SnapshotType = "Belief"
    one_liner: str | None = None
    story: str | None = None
    moment: str | None = None
    emotion: dict[str, Any] | None = None
    source: str | None = None
    trigger_pattern: str | None = None
    method: str | None = None
    steps: str | None = None
    filter: str | None = None
    challenge: str | None = None
    break_test: str | None = None
    risks: str | None = None
    proof: str | None = None
    confidence: float = 0.5
    significance_score: float = 0.5
    tags: list[str] = Field(default_factory=list)


class Snapshot(SnapshotFields):
    """A stored snapshot, as the API returns it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    brain_id: str | None = None
    source_type: str | None = None
    source_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    tags: list[str] = Field(default_factory=list)


class SearchHit(Snapshot):
    similarity: float | None = None
