"""Brand voices as system prompts: each voice's prompt fetched once and kept briefly for every process.

The document `<account>:voice:<workspace>:<voice>` (`server/state/layout.py`) is owned here:
`{"text": str, "seen_at": float}`, kept `VOICE_TTL_S`, so an edited voice is seen within minutes.
"""

from __future__ import annotations

from server.clock import Clock
from server.errors import NotFound
from server.neuroflash.client import NeuroflashClient
from server.state.layout import AccountKeys
from server.state.memory import MemoryStore
from server.state.store import Change, Doc, Store

VOICE_TTL_S = 600.0


def read_voice(doc: Doc | None) -> str | None:
    """The prompt a voice document holds; None when absent or not of this format."""
    text = doc.get("text") if doc is not None else None
    return text if isinstance(text, str) and text else None


class VoiceBook:
    """The brand voices' prompts, fetched from neuroflash once per voice and kept in the shared store."""

    def __init__(
        self, client: NeuroflashClient, clock: Clock, *, store: Store | None = None, keys: AccountKeys | None = None
    ) -> None:
        self._client = client
        self._clock = clock
        self._store: Store = store or MemoryStore(clock)
        self._keys = keys or AccountKeys("voices")

    async def prompt(self, workspace_id: str, voice_id: str) -> str:
        """The voice's system prompt: from the store while fresh, else from neuroflash (then kept).

        Raises:
            NotFound: neuroflash does not know the voice in this workspace; the hint says where to look.
            FlashsnapError: the prompt could not be had (its subclass says why).
        """
        key = self._keys.voice(workspace_id, voice_id)
        if (known := read_voice(await self._store.get(key))) is not None:
            return known
        try:
            text = await self._client.voice_prompt(workspace_id, voice_id)
        except NotFound as exc:
            exc.message = (
                f"neuroflash has no brand voice {voice_id!r} in workspace {workspace_id}; nothing was generated."
            )
            exc.hint = "Call list_brand_voices to see the workspace's brand voices and their ids."
            raise
        doc = {"text": text, "seen_at": self._clock.now()}
        await self._store.update(key, lambda _: Change(None, doc, VOICE_TTL_S))
        return text
