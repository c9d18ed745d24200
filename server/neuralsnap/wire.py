"""NeuralSnap's wire models: a snapshot as it is created, stored and found.

The vendor's pages disagree on two fields (`../shared/upstream-contract.md`, "NeuralSnap snapshot
shapes"): the API page and JS SDK give `emotion` as an object and `steps` as a string, the concepts
page `emotion` as a string and `steps` as a list of strings; `similarity` comes as a string
("0.9230"). A snapshot read from NeuralSnap accepts every one of these forms and keeps the one sent.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

SnapshotType = Literal["Belief", "Model", "Rule", "Conviction", "Principle"]


class _Thought(BaseModel):
    """The fields a snapshot has whichever page NeuralSnap follows."""

    name: str
    core: str
    type: SnapshotType = "Belief"
    one_liner: str | None = None
    story: str | None = None
    moment: str | None = None
    source: str | None = None
    trigger_pattern: str | None = None
    method: str | None = None
    filter: str | None = None
    challenge: str | None = None
    break_test: str | None = None
    risks: str | None = None
    proof: str | None = None
    confidence: float = 0.5
    significance_score: float = 0.5
    tags: list[str] = Field(default_factory=list)


class SnapshotFields(_Thought):
    """What a client may set on a snapshot (the POST body, in the API page's shape)."""

    emotion: dict[str, Any] | None = None
    steps: str | None = None


class SnapshotChanges(BaseModel):
    """The fields an update sets; a field left None is not changed."""

    name: str | None = None
    core: str | None = None
    type: SnapshotType | None = None
    one_liner: str | None = None
    story: str | None = None
    moment: str | None = None
    source: str | None = None
    trigger_pattern: str | None = None
    method: str | None = None
    filter: str | None = None
    challenge: str | None = None
    break_test: str | None = None
    risks: str | None = None
    proof: str | None = None
    confidence: float | None = None
    significance_score: float | None = None
    tags: list[str] | None = None
    emotion: dict[str, Any] | None = None
    steps: str | None = None

    def body(self) -> dict[str, Any]:
        """The fields to send: only those asked for."""
        return self.model_dump(exclude_none=True)


class _Stored(_Thought):
    """A snapshot as NeuralSnap keeps it, in either page's shape."""

    model_config = ConfigDict(extra="ignore")

    emotion: dict[str, Any] | str | None = Field(
        default=None, description="The feelings attached: an object of name to value, or one text."
    )
    steps: str | list[str] | None = Field(default=None, description="Steps to follow: one text, or a list.")
    brain_id: str | None = None
    source_type: str | None = None
    source_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Snapshot(_Stored):
    """A stored snapshot, as the API returns it."""

    id: str


def _score(value: object) -> object:
    """A similarity as NeuralSnap sends it ("0.9230", or a number); anything unreadable is no score."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


STORED_ONLY = frozenset({"id", "brain_id", "source_type", "source_id", "created_at", "updated_at", "similarity"})


def whole(snapshot: Snapshot, changes: SnapshotChanges) -> dict[str, Any]:
    """The whole snapshot with `changes` applied, as a PUT replaces it: every field it has keeps its value."""
    current = {k: v for k, v in snapshot.model_dump().items() if k not in STORED_ONLY and v is not None}
    return {**current, **changes.body()}


class Crystallized(BaseModel):
    """What a crystallize made: the new snapshots, and the tokens it spent of the monthly quota."""

    snapshots: list[Snapshot]
    count: int
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens: int | None = Field(default=None, description="Crystallize tokens spent of the plan's monthly quota.")


class Profile(BaseModel):
    """The account's plan and limits (GET /profile)."""

    model_config = ConfigDict(extra="ignore")

    plan: str
    snapshot_count: int | None = None
    search_count: int | None = None
    limits: dict[str, int | None] = Field(default_factory=dict)


class SearchHit(Snapshot):
    similarity: Annotated[float | None, BeforeValidator(_score)] = None


class SavedSnapshot(_Stored):
    """The snapshot NeuralSnap saved (HTTP 201), with every field that could be read from its answer."""

    id: str | None = Field(description="The new snapshot's id; None only when NeuralSnap's answer did not say it.")
    note: str | None = Field(
        default=None,
        description="Set only when NeuralSnap's answer could not be read in full: the snapshot WAS saved; "
        "the fields named here are shown as they were sent.",
    )


def read_saved(content: bytes, sent: SnapshotFields, status: int = 201) -> SavedSnapshot:
    """The snapshot a successful create answered with, read as far as it can be.

    NeuralSnap said it was saved (a 2xx), so an answer of another shape never turns into a failure:
    the fields it answered that can be read are kept, the rest are taken from what was sent, and
    `note` says which.
    """
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = None
    found = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
    answered: dict[str, Any] = found if isinstance(found, dict) else {}
    try:
        return SavedSnapshot.model_validate({**sent.model_dump(), **answered})
    except ValidationError:
        pass
    base = {**sent.model_dump(), "id": None}
    readable: dict[str, Any] = {}
    for name, value in answered.items():
        if name not in SavedSnapshot.model_fields or name == "note":
            continue
        try:
            SavedSnapshot.model_validate({**base, name: value})
        except ValidationError:
            continue
        readable[name] = value
    unread = sorted(set(answered) & set(SavedSnapshot.model_fields) - set(readable) - {"note"})
    saved = SavedSnapshot.model_validate({**base, **readable})
    missing = [] if saved.id is not None else ["id"]
    if not answered:
        what = "its answer could not be read"
    else:
        what = f"its answer could not be read in full ({', '.join(dict.fromkeys(unread + missing))})"
    found_by = "" if saved.id is not None else " search_snapshots finds it by its name."
    saved.note = (
        f"NeuralSnap saved the snapshot (it answered HTTP {status}), but {what}; "
        f"those fields are shown as they were sent.{found_by} Do not save it again."
    )
    return saved
