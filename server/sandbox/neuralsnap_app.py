"""The emulated NeuralSnap API: snapshots, search, API-key auth and an hourly rate limit.

It serves the variants of `state.variants` (server/sandbox/variants.py): the snapshot shape of the
API page or of the concepts page, the nested error form, the Starter plan's 403 on every call, a
monthly quota spent until the next billing cycle, and X-RateLimit-* headers as broken upstreams
send them.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.sandbox.common import EmulatedAPI, json_body
from server.sandbox.state import EmulatorState
from server.sandbox.variants import HeaderOddity, Variants

SNAPSHOT_TYPES = {"Belief", "Model", "Rule", "Conviction", "Principle"}
TEXT_FIELDS = (
    "one_liner", "story", "moment", "source", "trigger_pattern", "method",
    "filter", "challenge", "break_test", "risks", "proof",
)  # fmt: skip
INVALID_KEY = "Invalid API key. Check your Authorization header."
NO_ACCESS = "Valid key but insufficient permissions: your plan does not include API access."
YEARS_S = 5 * 365 * 86_400
# The profile page: requests per minute and monthly quotas by plan (Starter has no API access at all).
PLAN_LIMITS: dict[str, dict[str, int]] = {
    "free": {"snapshots": 1_000, "searches": 1_000, "api_rate": 100, "crystallize_tokens": 500_000},
    "pro": {"snapshots": 100_000, "searches": 10_000, "api_rate": 100, "crystallize_tokens": 2_000_000},
    "business": {"snapshots": 1_000_000, "searches": 40_000, "api_rate": 500, "crystallize_tokens": 10_000_000},
}


class NeuralSnapEmulator(EmulatedAPI):
    """NeuralSnap route handlers; every answer carries the X-RateLimit-* headers."""

    @property
    def variants(self) -> Variants:
        return self.state.variants

    async def _enter(
        self, route: str, request: Request, *, bucket: str, quota: str | None = None
    ) -> tuple[Response | None, str, dict[str, str]]:
        """Count, fault, authenticate, check the plan, rate-limit (the endpoint's `bucket` under the variant's
        rate model) and check the monthly `quota` of a request; returns (early answer, brain id, headers)."""
        early, _ = await self._begin(route)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        with self.state.lock:
            brain = self.state.api_keys.get(key) if scheme.lower() == "bearer" else None
            verdict = self.state.spend_rate(key, spend=brain is not None and early is None, bucket=bucket)
            window, over, limit = verdict.window, verdict.over, verdict.rule.limit
            now = self.state.clock.now()
            headers = rate_limit_headers(
                limit, limit - window.used, window.reset_at, now, self.variants.header_oddities
            )
            retry_after = max(1, math.ceil(window.reset_at - now))
            burst_wait = max(0.0, verdict.burst_reset_at - now)
            renewal = max(1, math.ceil(next_billing_cycle(now) - now))
        if early is not None:
            early.headers.update(headers)
        elif brain is None:
            early = self._error(401, INVALID_KEY, "AUTH_INVALID_KEY", headers)
        elif self.variants.plan == "starter":
            early = self._error(403, NO_ACCESS, "FORBIDDEN", headers)
        elif verdict.burst_over:
            # The rate-limits page: a per-second burst limit beside the per-minute one; the window still has room.
            wait = max(1, math.ceil(burst_wait))
            msg = f"Rate limit exceeded (burst). Try again in {wait} seconds."
            early = self._error(429, msg, "RATE_LIMIT_EXCEEDED", {**headers, "Retry-After": str(wait)},
                                retry_after=wait)  # fmt: skip
        elif over:
            msg = f"Rate limit exceeded. Try again in {retry_after} seconds."
            early = self._error(429, msg, "RATE_LIMIT_EXCEEDED", {**headers, "Retry-After": str(retry_after)},
                                retry_after=retry_after)  # fmt: skip
        elif quota is not None and quota in self.variants.monthly_spent:
            # The profile page: a spent monthly quota answers 429 until the next billing cycle, with the
            # rate-limit code the errors page documents, and the rate window's headers as on every answer.
            msg = f"Monthly {quota} quota exceeded for your plan. Try again in {renewal} seconds."
            early = self._error(429, msg, "RATE_LIMIT_EXCEEDED", {**headers, "Retry-After": str(renewal)},
                                retry_after=renewal)  # fmt: skip
        if early is not None:
            self._done(route, early)
        return early, brain or "", headers

    def _error(
        self, status: int, message: str, code: str, headers: dict[str, str], *, retry_after: int | None = None
    ) -> JSONResponse:
        """An error body in the form the variant serves: flat `{"error", "code"}` or nested `{"error": {…}}`."""
        if self.variants.nested_errors:
            details = {} if retry_after is None else {"retry_after": retry_after}
            body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details}}
        else:
            body = {"error": message, "code": code}
            if retry_after is not None:
                body["retry_after"] = retry_after
        return JSONResponse(body, status_code=status, headers=headers)

    def _shaped(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """A stored snapshot as the variant's page shows it."""
        return shaped(snapshot, self.variants.snapshot_shape)

    async def create(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_create", request, bucket="write")
        if early is not None:
            return early
        body = await json_body(request)
        problem = validate_snapshot(body, self.variants.snapshot_shape)
        if problem:
            return self._done("snapshot_create", self._error(400, problem, "BAD_REQUEST", headers))
        assert isinstance(body, dict)
        self.state.received.append(("snapshot_create", body))
        chosen = self._brain(request, brain, body.get("brain_id"))
        if chosen is None:
            return self._done("snapshot_create", self._no_brain(headers))
        snapshot = new_snapshot(body, chosen, self.state.clock.now())
        self.state.add_snapshot(snapshot)
        answer = JSONResponse({"data": self._shaped(snapshot)}, status_code=201, headers=headers)
        return self._done("snapshot_create", answer)

    def _brain(self, request: Request, brain: str, asked: object) -> str | None:
        """The brain a request means: the one it names (`brain_id`) if the key has it, else the key's own."""
        if asked is None:
            return brain
        key = request.headers.get("authorization", "").partition(" ")[2]
        with self.state.lock:
            others = self.state.brains.get(key, set())
        return asked if isinstance(asked, str) and (asked == brain or asked in others) else None

    def _no_brain(self, headers: dict[str, str]) -> Response:
        return self._error(404, "Brain not found.", "NOT_FOUND", headers)

    async def update(self, request: Request) -> Response:
        """PATCH merges the fields sent; PUT replaces the whole snapshot (fields left out fall back to defaults)."""
        route = "snapshot_update"
        verb = request.method.lower()
        if self.variants.snapshot_update not in (verb, "both"):
            self.state.arrived(route)
            return self._done(route, JSONResponse({"error": "Method Not Allowed"}, status_code=405))
        early, brain, headers = await self._enter(route, request, bucket="write")
        if early is not None:
            return early
        body = await json_body(request)
        current = self.state.snapshot(request.path_params["snapshot_id"])
        if current is None or current["brain_id"] != brain:
            return self._done(route, self._error(404, "Snapshot not found.", "NOT_FOUND", headers))
        if not isinstance(body, dict):
            return self._done(route, self._error(400, "The body must be a JSON object.", "BAD_REQUEST", headers))
        self.state.received.append((f"snapshot_{verb}", body))
        merged = {**current, **body} if verb == "patch" else body
        problem = validate_snapshot(merged, self.variants.snapshot_shape)
        if problem:
            return self._done(route, self._error(400, problem, "BAD_REQUEST", headers))
        fresh = new_snapshot(merged, brain, self.state.clock.now())
        changed = {**fresh, "id": current["id"], "created_at": current["created_at"],
                   "source_type": current["source_type"], "source_id": current["source_id"]}  # fmt: skip
        self.state.replace_snapshot(changed)
        return self._done(route, JSONResponse({"data": self._shaped(changed)}, headers=headers))

    async def delete(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_delete", request, bucket="write")
        if early is not None:
            return early
        snapshot_id = request.path_params["snapshot_id"]
        current = self.state.snapshot(snapshot_id)
        if current is None or current["brain_id"] != brain or not self.state.delete_snapshot(snapshot_id):
            return self._done("snapshot_delete", self._error(404, "Snapshot not found.", "NOT_FOUND", headers))
        body = {"data": {"id": snapshot_id, "deleted": True}}  # [assumed] the pages show no answer
        return self._done("snapshot_delete", JSONResponse(body, headers=headers))

    async def crystallize(self, request: Request) -> Response:
        """Turn a text into snapshots; spends the plan's monthly crystallize tokens."""
        route = "crystallize"
        early, brain, headers = await self._enter(route, request, bucket="crystallize", quota="crystallize")
        if early is not None:
            return early
        body = await json_body(request)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not 50 <= len(text) <= 100_000:
            msg = "text is required and must be 50 to 100,000 characters."
            return self._done(route, self._error(400, msg, "BAD_REQUEST", headers))
        assert isinstance(body, dict)
        self.state.received.append((route, body))
        chosen = self._brain(request, brain, body.get("brain_id"))
        if chosen is None:
            return self._done(route, self._no_brain(headers))
        now = self.state.clock.now()
        made = []
        for part in crystals(text):
            fields = {"name": " ".join(part.split()[:6]), "core": part, "type": "Belief", "tags": ["crystallized"]}
            snapshot = {**new_snapshot(fields, chosen, now), "source_type": body.get("source_type") or "text"}
            self.state.add_snapshot(snapshot)
            made.append(self._shaped(snapshot))
        tokens_in, tokens_out = math.ceil(len(text) / 4), 60 * len(made)
        with self.state.lock:
            self.state.crystallize_tokens += tokens_in + tokens_out
        answer = {
            "data": {"snapshots": made, "count": len(made)},
            "usage": {"totalTokensIn": tokens_in, "totalTokensOut": tokens_out, "totalTokens": tokens_in + tokens_out},
            "meta": {"brain_id": chosen, "review": bool(body.get("review", False))},
        }
        return self._done(route, JSONResponse(answer, status_code=201, headers=headers))

    async def profile(self, request: Request) -> Response:
        early, brain, headers = await self._enter("profile", request, bucket="read")
        if early is not None:
            return early
        plan = self.variants.plan
        limits = PLAN_LIMITS.get(plan, PLAN_LIMITS["free"])
        body = {"data": {"plan": plan, "snapshot_count": len(self.state.snapshots_of(brain)),
                         "search_count": self.state.count("snapshot_search"), "limits": limits}}  # fmt: skip
        return self._done("profile", JSONResponse(body, headers=headers))

    async def list(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_list", request, bucket="read")
        if early is not None:
            return early
        limit = int_param(request, "limit", 20, 1, 100)
        offset = int_param(request, "offset", 0, 0, 1_000_000)
        if limit is None or offset is None:
            msg = "limit or offset is out of range."
            return self._done("snapshot_list", self._error(400, msg, "BAD_REQUEST", headers))
        chosen = self._brain(request, brain, request.query_params.get("brain_id"))
        if chosen is None:
            return self._done("snapshot_list", self._no_brain(headers))
        page, count = self.state.snapshot_page(chosen, offset, limit)
        body = {"data": [self._shaped(s) for s in page], "count": count}
        return self._done("snapshot_list", JSONResponse(body, headers=headers))

    async def search(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_search", request, bucket="search", quota="search")
        if early is not None:
            return early
        query = request.query_params.get("q", "").strip()
        limit = int_param(request, "limit", 10, 1, 100)
        if not query or limit is None:
            msg = "q is required and limit must be from 1 to 100."
            return self._done("snapshot_search", self._error(400, msg, "BAD_REQUEST", headers))
        chosen = self._brain(request, brain, request.query_params.get("brain_id"))
        if chosen is None:
            return self._done("snapshot_search", self._no_brain(headers))
        scored = [(similarity(query, s), s) for s in self.state.snapshots_of(chosen)]
        hits = sorted((p for p in scored if p[0] > 0), key=lambda p: p[0], reverse=True)[:limit]
        data = [{**self._shaped(s), "similarity": f"{score:.4f}"} for score, s in hits]
        body = {"data": data, "count": len(data), "query": query}
        return self._done("snapshot_search", JSONResponse(body, headers=headers))

    async def get(self, request: Request) -> Response:
        early, brain, headers = await self._enter("snapshot_get", request, bucket="read")
        if early is not None:
            return early
        snapshot = self.state.snapshot(request.path_params["snapshot_id"])
        if snapshot is None or snapshot["brain_id"] != brain:
            return self._done("snapshot_get", self._error(404, "Snapshot not found.", "NOT_FOUND", headers))
        return self._done("snapshot_get", JSONResponse({"data": self._shaped(snapshot)}, headers=headers))


def new_snapshot(body: dict[str, Any], brain: str, now: float) -> dict[str, Any]:
    """A snapshot as stored, from a valid body: every field, the defaults where the body has none."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    return {
        "id": str(uuid.uuid4()),
        "brain_id": brain,
        "name": body["name"],
        "core": body["core"],
        "type": body.get("type", "Belief"),
        **{f: body.get(f) for f in TEXT_FIELDS},
        "emotion": body.get("emotion"),
        "steps": body.get("steps"),
        "confidence": body.get("confidence", 0.5),
        "significance_score": body.get("significance_score", 0.5),
        "tags": body.get("tags", []),
        "source_type": "api",
        "source_id": None,
        "created_at": stamp,
        "updated_at": stamp,
    }


def crystals(text: str) -> list[str]:
    """The thoughts a text is cut into: its paragraphs (or sentences), at most five, at least one."""
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(parts) < 2:
        parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", text) if p.strip()]
    return parts[:5] or [text.strip()]


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


def validate_snapshot(body: object, shape: str = "api") -> str | None:
    """The upstream's 400 rules, as one message (the concepts page's shape also takes the API page's forms)."""
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
    emotion, steps = body.get("emotion"), body.get("steps")
    if shape == "concepts":
        if emotion is not None and not isinstance(emotion, str | dict):
            return "emotion must be a string."
        steps_list = isinstance(steps, list) and all(isinstance(s, str) for s in steps)
        if steps is not None and not isinstance(steps, str) and not steps_list:
            return "steps must be a list of strings."
        return None
    if emotion is not None and not isinstance(emotion, dict):
        return "emotion must be an object."
    if steps is not None and not isinstance(steps, str):
        return "steps must be a string."
    return None


def shaped(snapshot: dict[str, Any], shape: str) -> dict[str, Any]:
    """A snapshot in the shape of the API page (as stored) or of the concepts page: `emotion` one string,
    `steps` a list of strings."""
    if shape != "concepts":
        return snapshot
    emotion, steps = snapshot.get("emotion"), snapshot.get("steps")
    if isinstance(emotion, dict):
        emotion = ", ".join(f"{name}: {value}" for name, value in emotion.items())
    if isinstance(steps, str):
        steps = [line.strip() for line in steps.splitlines() if line.strip()]
    return {**snapshot, "emotion": emotion, "steps": steps}


def next_billing_cycle(now: float) -> float:
    """When a monthly quota renews: the start of the next calendar month, UTC."""
    today = datetime.fromtimestamp(now, UTC)
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def rate_limit_headers(
    limit: int, remaining: int, reset_at: float, now: float, oddities: frozenset[HeaderOddity] = frozenset()
) -> dict[str, str]:
    """X-RateLimit-* as the contract documents them, or bent the ways broken upstreams bend them."""
    reset: float = math.ceil(reset_at)
    remaining = max(0, remaining)
    if "reset_ms" in oddities:
        reset = reset * 1000
    elif "reset_relative" in oddities:
        reset = max(0, math.ceil(reset_at - now))
    elif "reset_past" in oddities:
        reset = math.floor(now) - 3600
    elif "reset_far" in oddities:
        reset = math.ceil(now) + YEARS_S
    if "remaining_above_limit" in oddities:
        remaining = limit + 50
    if "remaining_negative" in oddities:
        remaining = -5
    if "limit_zero" in oddities:
        limit = 0
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(int(reset)),
    }


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
            Route("/snapshots/{snapshot_id}", emulator.update, methods=["PATCH", "PUT"]),
            Route("/snapshots/{snapshot_id}", emulator.delete, methods=["DELETE"]),
            Route("/crystallize", emulator.crystallize, methods=["POST"]),
            Route("/profile", emulator.profile, methods=["GET"]),
        ]
    )
