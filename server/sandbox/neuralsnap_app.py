"""The emulated NeuralSnap API: snapshots, search, API-key auth and an hourly rate limit."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.sandbox.common import EmulatedAPI, error
from server.sandbox.state import EmulatorState

SNAPSHOT_TYPES = {"Belief", "Model", "Rule", "Conviction", "Principle"}
TEXT_FIELDS = (
    "one_liner", "story", "moment", "source", "trigger_pattern", "method", "steps",
    "filter", "challenge", "break_test", "risks", "proof",
)  # fmt: skip
INVALID_KEY = "Invalid API key. Check your Authorization header."


class NeuralSnapEmulator(EmulatedAPI):
    """NeuralSnap route handlers; every answer carries the X-RateLimit-* headers."""

    async def _enter(self, route: str, request: Request) -> tuple[Response | None, str, dict[str, str]]:
        """Count, fault, authenticate and rate-limit a request; returns (early answer, brain id, headers)."""
        early, _ = await self._begin(route)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        with self.state.lock:
            brain = self.state.api_keys.get(key) if scheme.lower() == "bearer" else None
            window, over = self.state.spend_rate(key, spend=brain is not None and early is None)
            headers = {
                "X-RateLimit-Limit": str(self.state.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.state.rate_limit - window.used)),
                "X-RateLimit-Reset": str(math.ceil(window.reset_at)),
            }
            retry_after = max(1, math.ceil(window.reset_at - self.state.clock.now()))
        if early is not None:
            early.headers.update(headers)
        elif brain is None:
            early = error(401, INVALID_KEY, "AUTH_INVALID_KEY", headers)
        elif over:
            msg = f"Rate limit exceeded. Try again in {retry_after} seconds."
            early = error(429, msg, "RATE_LIMIT_EXCEEDED", {**headers, "Retry-After": str(retry_after)})
        if early is not None:
            self._done(route, early)
        return early, brain or "", headers

    async def create(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_create", request)
        if early is not None:
            return early
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        problem = validate_snapshot(body)
        if problem:
            return self._done("snapshot_create", error(400, problem, "BAD_REQUEST", headers))
        assert isinstance(body, dict)
        now = datetime.fromtimestamp(self.state.clock.now(), UTC).isoformat().replace("+00:00", "Z")
        snapshot: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "brain_id": brain,
            "name": body["name"],
            "core": body["core"],
            "type": body.get("type", "Belief"),
            **{f: body.get(f) for f in TEXT_FIELDS},
            "emotion": body.get("emotion"),
            "confidence": body.get("confidence", 0.5),
            "significance_score": body.get("significance_score", 0.5),
            "tags": body.get("tags", []),
            "source_type": "api",
            "source_id": None,
            "created_at": now,
            "updated_at": now,
        }
        self.state.add_snapshot(snapshot)
        return self._done("snapshot_create", JSONResponse({"data": snapshot}, status_code=201, headers=headers))

    async def list(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_list", request)
        if early is not None:
            return early
        limit = int_param(request, "limit", 20, 1, 100)
        offset = int_param(request, "offset", 0, 0, 1_000_000)
        if limit is None or offset is None:
            return self._done("snapshot_list", error(400, "limit or offset is out of range.", "BAD_REQUEST", headers))
        page, count = self.state.snapshot_page(brain, offset, limit)
        body = {"data": page, "count": count}
        return self._done("snapshot_list", JSONResponse(body, headers=headers))

    async def search(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_search", request)
        if early is not None:
            return early
        query = request.query_params.get("q", "").strip()
        limit = int_param(request, "limit", 10, 1, 100)
        if not query or limit is None:
            msg = "q is required and limit must be from 1 to 100."
            return self._done("snapshot_search", error(400, msg, "BAD_REQUEST", headers))
        scored = [(similarity(query, s), s) for s in self.state.snapshots_of(brain)]
        hits = sorted((p for p in scored if p[0] > 0), key=lambda p: p[0], reverse=True)[:limit]
        data = [{**s, "similarity": f"{score:.4f}"} for score, s in hits]
        body = {"data": data, "count": len(data), "query": query}
        return self._done("snapshot_search", JSONResponse(body, headers=headers))

    async def get(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_get", request)
        if early is not None:
            return early
        snapshot = self.state.snapshot(request.path_params["snapshot_id"])
        if snapshot is None or snapshot["brain_id"] != brain:
            return self._done("snapshot_get", error(404, "Snapshot not found.", "NOT_FOUND", headers))
        return self._done("snapshot_get", JSONResponse({"data": snapshot}, headers=headers))


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


def validate_snapshot(body: object) -> str | None:
    """The upstream's 400 rules, as one message."""
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    for required in ("name", "core"):
        if not isinstance(body.get(required), str) or not body[required].strip():
            return f"{required} is required."
    if body.get("type", "Belief") not in SNAPSHOT_TYPES:
        return f"type must be one of {', '.join(sorted(SNAPSHOT_TYPES))}."
    for score in ("confidence", "significance_score"):
        value = body.get(score, 0.5)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            return f"{score} must be a number from 0 to 1."
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "tags must be a list of strings."
    for name in TEXT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            return f"{name} must be a string."
    if body.get("emotion") is not None and not isinstance(body["emotion"], dict):
        return "emotion must be an object."
    return None


WORD = re.compile(r"\w+")


def similarity(query: str, snapshot: dict[str, Any]) -> float:
    """Share of the query's words found in the snapshot's text: a stand-in for semantic search."""
    wanted = {w.lower() for w in WORD.findall(query)}
    text = " ".join(str(snapshot.get(f) or "") for f in ("name", "core", "one_liner", "story"))
    have = {w.lower() for w in WORD.findall(text)} | {t.lower() for t in snapshot.get("tags") or []}
    return len(wanted & have) / len(wanted) if wanted else 0.0


def build_app(state: EmulatorState) -> Starlette:
    emulator = NeuralSnapEmulator(state)
    return Starlette(
        routes=[
            Route("/snapshots", emulator.create, methods=["POST"]),
            Route("/snapshots", emulator.list, methods=["GET"]),
            Route("/snapshots/search", emulator.search, methods=["GET"]),
            Route("/snapshots/{snapshot_id}", emulator.get, methods=["GET"]),
        ]
    )
