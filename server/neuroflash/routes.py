"""Which neuroflash routes answer at an API URL: the chat path that works, and whether the model list exists.

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

from server.clock import Clock
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
