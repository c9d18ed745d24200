"""Which neuroflash routes answer at an API URL: the chat path that works, and whether the model list exists.

A route is told apart without generating (`RouteFinder`): a 404 that names what it did not find is the service's;
any other is confirmed with a probe the route refuses before doing anything, and 404 again is the gateway's.

The vendors' pages disagree (docs/upstream-contract.md, "Where the vendors' own pages disagree"): the
chat-completions reference page posts to `REFERENCE_CHAT_PATH`, the overview page to `OVERVIEW_CHAT_PATH`,
and only the overview page has the model list. What answers is learned from the upstream and kept in
the shared store, one pair of documents per API URL (`server/state/layout.py`), so every process asks once.

This module owns the two documents' format:

- `<routes>:chat` = `{"path": str, "seen_at": float}`: a chat path that answered (kept `CHAT_TTL_S`);
- `<routes>:models` = `{"missing": true, "seen_at": float}`: the model list answered a gateway 404
  (kept `MODELS_TTL_S`).

No verdict outlives its reason: a remembered chat path that answers a gateway 404 is forgotten at once,
and a model list that answers again clears its "missing".
"""

from __future__ import annotations

import httpx2

from server.clock import Clock
from server.errors import RouteMissing
from server.httpio import error_body
from server.neuroflash.refusals import SERVICE
from server.responses import transport_failure
from server.state.layout import RouteKeys
from server.state.memory import MemoryStore
from server.state.store import Change, Doc, Store

REFERENCE_CHAT_PATH = "/api/ds-prototypes/chat/completions"  # the reference page and all its examples
OVERVIEW_CHAT_PATH = "/api/ds-prototypes/content_generation/chat/completions"  # the overview page
CHAT_PATHS = (REFERENCE_CHAT_PATH, OVERVIEW_CHAT_PATH)  # in the order they are tried
MODELS_PATH = "/api/ds-prototypes/model_selection/models"  # on the overview page only
HEALTH_PATH = "/api/ds-prototypes/health"  # on the reference page
VOICE_ROUTES = ("ds-prompt", "summaries")  # a brand voice's prompt: the brand-voice pages', the newer page's

CHAT_TTL_S = 6 * 3600.0  # a deploy may move the route; a 404 forgets it sooner
MODELS_TTL_S = 3600.0  # long enough not to ask at every generate, short enough to see the route come back
# How long this process trusts its own last "the model list answered" before writing it to the store again: the
# write changes nothing in the common case and was a store transaction on every list_models call. Another
# process's "missing" may so outlive a working route by this long at most, and "missing" only means the upstream
# judges the model itself.
MODELS_SEEN_MEMO_S = 60.0


def read_chat(doc: Doc | None) -> str | None:
    """The chat path a `<routes>:chat` document names; None when absent or not of this format."""
    path = doc.get("path") if doc is not None else None
    return path if isinstance(path, str) and path.startswith("/") else None


def read_models_missing(doc: Doc | None) -> bool:
    """Whether a `<routes>:models` document says the model list's route is missing."""
    return doc is not None and doc.get("missing") is True


class RouteBook:
    """What this API URL's routes are known to be, shared by every process through the store."""

    def __init__(self, clock: Clock, *, store: Store | None = None, keys: RouteKeys | None = None) -> None:
        self._clock = clock
        self._store: Store = store or MemoryStore(clock)
        self._keys = keys or RouteKeys("routes")
        self._models_present_at: float | None = None

    async def chat_path(self) -> str | None:
        """The chat path that answered last, if it is still remembered."""
        return read_chat(await self._store.get(self._keys.chat))

    async def chat_answered(self, path: str) -> None:
        """Remember `path` as the chat route that exists (a write only when it changes)."""

        def learn(doc: Doc | None) -> Change[None]:
            if read_chat(doc) == path:
                return Change(None)
            return Change(None, {"path": path, "seen_at": self._clock.now()}, CHAT_TTL_S)

        await self._store.update(self._keys.chat, learn)

    async def chat_missing(self, path: str) -> None:
        """Forget `path` if it is the remembered chat route: it answered the gateway's 404."""

        def forget(doc: Doc | None) -> Change[None]:
            return Change(None, None) if read_chat(doc) == path else Change(None)

        await self._store.update(self._keys.chat, forget)

    async def models_missing(self) -> bool:
        """Whether the model list's route was seen missing within `MODELS_TTL_S`."""
        return read_models_missing(await self._store.get(self._keys.models))

    async def models_seen(self, *, missing: bool) -> None:
        """Record what the model list's route answered: a gateway 404 (`missing`), or anything else."""
        now = self._clock.now()
        if not missing and self._models_present_at is not None and now - self._models_present_at < MODELS_SEEN_MEMO_S:
            return
        self._models_present_at = None if missing else now

        def learn(doc: Doc | None) -> Change[None]:
            if read_models_missing(doc) == missing:
                return Change(None)
            if not missing:
                return Change(None, None)
            return Change(None, {"missing": True, "seen_at": self._clock.now()}, MODELS_TTL_S)

        await self._store.update(self._keys.models, learn)

    async def voice_route(self) -> str | None:
        """The brand-voice prompt route (one of VOICE_ROUTES) that answered last, if still remembered."""
        kind = read_chat(await self._store.get(self._keys.voice))
        return kind.removeprefix("/") if kind else None

    async def voice_answered(self, kind: str) -> None:
        """Remember the brand-voice prompt route that exists (same format as the chat path: `/<kind>`)."""
        await self.chat_answered_at(self._keys.voice, "/" + kind)

    async def voice_missing(self, kind: str) -> None:
        """Forget `kind` if it is the remembered brand-voice prompt route."""

        def forget(doc: Doc | None) -> Change[None]:
            return Change(None, None) if read_chat(doc) == "/" + kind else Change(None)

        await self._store.update(self._keys.voice, forget)

    async def chat_answered_at(self, key: str, path: str) -> None:
        def learn(doc: Doc | None) -> Change[None]:
            if read_chat(doc) == path:
                return Change(None)
            return Change(None, {"path": path, "seen_at": self._clock.now()}, CHAT_TTL_S)

        await self._store.update(key, learn)


class RouteFinder:
    """Which route to try first and whether a 404 is a missing route, learning into `book` as it goes.

    The chat path is `pinned_chat_path` when one is pinned (NEUROFLASH_CHAT_PATH), and then nothing is learnt;
    otherwise the one `book` remembers, else the reference page's, then the other one.
    """

    def __init__(self, http: httpx2.AsyncClient, book: RouteBook, pinned_chat_path: str | None = None) -> None:
        self._http = http
        self.book = book
        self.pinned_chat_path = pinned_chat_path

    async def known_chat_path(self) -> str | None:
        """The chat path remembered as answering; None when a path is pinned (nothing is learnt then)."""
        return None if self.pinned_chat_path is not None else await self.book.chat_path()

    async def chat_candidates(self) -> list[str]:
        """The chat paths to try, in order: the pinned one alone, else the remembered one first."""
        if self.pinned_chat_path is not None:
            return [self.pinned_chat_path]
        known = await self.book.chat_path()
        return [known, *[p for p in CHAT_PATHS if p != known]] if known else list(CHAT_PATHS)

    async def chat_answered(self, path: str) -> None:
        """`path` answered as a route: remembered, unless a path is pinned."""
        if self.pinned_chat_path is None:
            await self.book.chat_answered(path)

    async def chat_missing(self, path: str) -> None:
        """`path` answered the gateway's 404: forgotten, unless a path is pinned."""
        if self.pinned_chat_path is None:
            await self.book.chat_missing(path)

    async def find_chat_path(self) -> tuple[str | None, list[str]]:
        """The chat path that exists, found without generating: a body the route refuses before it generates
        (no workspace header, no messages) answers 400/422 where the route exists and the gateway's 404 where not.

        Returns the path (None when none exists) and the paths tried; what is found is remembered.

        Raises:
            UpstreamError: a probe got no answer, or the token was refused (its subclass says which).
        """
        tried: list[str] = []
        for path in await self.chat_candidates():
            tried.append(path)
            probe = await self._probe(path, "POST")
            if probe.status_code != 404 or names_resource(probe):
                await self.chat_answered(path)
                return path, tried
            await self.chat_missing(path)
        return None, tried

    def no_chat_route(self, tried: list[str]) -> RouteMissing:
        """The error for a generation whose every chat path answered the gateway's 404 (nothing was processed)."""
        if self.pinned_chat_path is not None:
            message = (
                f"NEUROFLASH_CHAT_PATH={self.pinned_chat_path} is not a route of this neuroflash API: the gateway "
                "answered 404 and nothing was processed."
            )
            hint = "Ask the user to correct NEUROFLASH_CHAT_PATH, or to unset it so the server finds the path itself."
        else:
            message = (
                "neuroflash has no chat-completions route at NEUROFLASH_API_URL: "
                + " and ".join(tried)
                + " each answered the gateway's 404, so nothing was processed and no words were spent."
            )
            hint = "Ask the user to check NEUROFLASH_API_URL, or to set NEUROFLASH_CHAT_PATH to the documented path."
        return RouteMissing(message, paths=tried, hint=hint)

    async def voice_order(self) -> tuple[str | None, list[str]]:
        """The brand-voice prompt route remembered (if any), and the routes to try: that one first."""
        known = await self.book.voice_route()
        order = [known, *[k for k in VOICE_ROUTES if k != known]] if known in VOICE_ROUTES else list(VOICE_ROUTES)
        return known, order

    async def is_missing_route(self, path: str, method: str, response: httpx2.Response) -> bool:
        """Whether a 404 at `path` is the gateway's (no such route) rather than the service's (no such workspace).

        A 404 that names what it did not find (a code, or the words workspace or model) is the service's. Any
        other is confirmed with a probe the route refuses before doing anything: 404 again means no route.

        Raises:
            UpstreamError: the probe got no answer, or no token (its subclass says which).
        """
        if names_resource(response):
            return False
        probe = await self._probe(path, method)
        return probe.status_code == 404 and not names_resource(probe)

    async def _probe(self, path: str, method: str) -> httpx2.Response:
        """A request the route refuses before it does anything: no workspace header, and for POST an empty body.

        Raises:
            UpstreamUnavailable: the probe got no answer.
            CredentialsRejected: no token could be had for it.
        """  # noqa: DOC501 - `raise transport_failure(…)` raises the UpstreamUnavailable named here
        try:
            return await self._http.request(method, path, json={} if method == "POST" else None)
        except httpx2.TransportError as exc:
            raise transport_failure(exc, service=SERVICE, method="GET") from None


def no_voice_route(tried: list[str]) -> RouteMissing:
    """The error for a brand voice whose every prompt route answered the gateway's 404 (nothing was generated)."""
    return RouteMissing(
        "neuroflash has no brand-voice prompt route at NEUROFLASH_API_URL: "
        + " and ".join(tried)
        + " each answered the gateway's 404; nothing was generated.",
        paths=tried,
        hint="Generate without brand_voice_id, or ask the user to check NEUROFLASH_API_URL.",
    )


def routing_page(response: httpx2.Response, path: str) -> bool:
    """Whether a 404 is the gateway framework's own page for a path it has no route for: a JSON object whose
    `status` is 404 and whose `path` is the very path asked for (the shape Spring's and the gateway's error pages
    share), naming nothing it missed. One such answer is enough to try the other chat path; it is confirmed with a
    probe only if no path answers at all."""
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or body.get("status") != 404:
        return False
    said = body.get("path")
    return isinstance(said, str) and said.endswith(path) and not names_resource(response)


def names_resource(response: httpx2.Response) -> bool:
    """Whether a 404's body is a service's own: it carries a code, or names a workspace or model it did not find."""
    code, message = error_body(response)
    return code is not None or any(word in message.lower() for word in ("workspace", "model", "voice"))
