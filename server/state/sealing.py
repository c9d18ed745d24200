"""Sealed documents: the store carries what makes the server act, but only the account's own secret writes it.

Whoever can write the store (the state directory's user, any client of the Redis keyspace) is not trusted to
command the server: a document whose content steers a request (the access token and its lease, a remembered
failure, quotas, a brand voice's prompt, a used answer, a learned route, a listing a client is shown) is
sealed with AES-GCM under a key derived with HKDF-SHA256 from the account's upstream secret (the neuroflash
client secret, the NeuralSnap API key), the key's name as associated data, so a sealed document cannot be
moved to another key either. A writer without the secret can read none of it and plant none of it: a
document that does not open reads as absent (logged once per key, never its content). It can still delete
one; what that can do is bounded where each document is owned (see the README's security section).

Which keys are sealed, and under whose secret, is `layout.sealing_scope`'s answer; the scheduler's documents
(gate, slots) are read by store-side scripts and are bounded there instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from server.state.layout import sealing_scope
from server.state.store import KEEP, Announces, Change, Doc, Mutation, R, Store, StoreUnavailable

log = logging.getLogger(__name__)
INFO: Final = b"flashsnap-mcp state seal v1"  # HKDF's context: a key for this use only, whatever else the secret keys
NONCE_BYTES: Final = 12  # AES-GCM's standard nonce; random, so 2**32 seals per key stay far from a collision
FIELD: Final = "sealed"  # the one field of a sealed document: base64 of nonce + ciphertext + tag
MAX_LOGGED_KEYS: Final = 256  # keys whose failure to open was logged: a bound, so a flood of plants costs nothing


class Seal:
    """AES-GCM under a key derived from one secret; a document's key name is its associated data."""

    def __init__(self, secret: SecretStr) -> None:
        hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=INFO)
        self._aead = AESGCM(hkdf.derive(secret.get_secret_value().encode()))

    def seal(self, name: str, doc: Doc) -> Doc:
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        return {FIELD: base64.b64encode(nonce + self._aead.encrypt(nonce, plain, name.encode())).decode()}

    def open(self, name: str, doc: Doc) -> Doc | None:
        """The document sealed under `name`, or None when it is not one this secret sealed for this key."""
        sealed = doc.get(FIELD)
        if not isinstance(sealed, str) or len(doc) != 1:
            return None
        try:
            raw = base64.b64decode(sealed, validate=True)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], name.encode())
            opened = json.loads(plain)
        except (binascii.Error, InvalidTag, ValueError):
            return None
        return opened if isinstance(opened, dict) else None


class SealedStore:
    """A store whose documents are sealed per `sealing_scope`; the scheduler's keys pass through as they are."""

    def __init__(self, inner: Store, seals: dict[str, SecretStr]) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.shared = inner.shared
        self._seals = {scope: Seal(secret) for scope, secret in seals.items()}
        self._logged: set[str] = set()
        # The scheduler's announcements pass through: they concern its documents, which are plain.
        self.announces = isinstance(inner, Announces) and inner.announces

    def changes(self, prefix: str) -> AsyncIterator[tuple[str, Doc]]:
        """The inner store's announcements of the keys under `prefix` (see `Announces`).

        Raises:
            StoreUnavailable: the store failed, or announces nothing (the caller listens again later).
        """
        if not isinstance(self.inner, Announces):
            raise StoreUnavailable("this store announces no change")
        return self.inner.changes(prefix)

    @property
    def degraded(self) -> bool:
        return self.inner.degraded

    @property
    def problem(self) -> str | None:
        return self.inner.problem

    async def get(self, key: str) -> Doc | None:
        scope = sealing_scope(key)
        if scope is None:
            return await self.inner.get(key)
        seal = self._seals.get(scope)
        if seal is None:
            return None  # no secret of this server opens it: someone else's, or planted
        return self._open(seal, key, await self.inner.get(key))

    async def update(self, key: str, mutate: Mutation[R]) -> R:
        scope = sealing_scope(key)
        if scope is None:
            return await self.inner.update(key, mutate)
        seal = self._seals.get(scope)

        def sealed(raw: Doc | None) -> Change[R]:
            change = mutate(self._open(seal, key, raw) if seal is not None else None)
            if change.doc is None or change.doc is KEEP:
                return change  # deleting needs no secret (`flashsnap-mcp forget` clears any account's documents)
            if seal is None:
                raise LookupError(f"no secret of this server seals the documents of {scope}")  # a bug, never data
            assert isinstance(change.doc, dict)
            return Change(change.result, seal.seal(key, change.doc), change.ttl_s)

        return await self.inner.update(key, sealed)

    def seal_also(self, seals: dict[str, SecretStr]) -> None:
        """Seal the documents of more scopes from now on: an account the team file gained while the server ran."""
        for scope, secret in seals.items():
            self._seals.setdefault(scope, Seal(secret))

    def can_open(self, key: str) -> bool:
        """Whether this server holds the secret the document at `key` is sealed with (or it is left plain)."""
        scope = sealing_scope(key)
        return scope is None or scope in self._seals

    async def keys(self, prefix: str) -> list[str]:
        return await self.inner.keys(prefix)

    async def ping(self) -> None:
        await self.inner.ping()

    def describe(self) -> str:
        return self.inner.describe()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _open(self, seal: Seal, key: str, raw: Doc | None) -> Doc | None:
        if raw is None:
            return None
        opened = seal.open(key, raw)
        if opened is None and key not in self._logged and len(self._logged) < MAX_LOGGED_KEYS:
            self._logged.add(key)
            log.warning("the state document %s is not sealed by this server's credentials; read as absent", key)
        return opened


def readable(store: Store, key: str) -> bool:
    """Whether `store` can show the document at `key`: False for one sealed with a secret this process lacks."""
    return not isinstance(store, SealedStore) or store.can_open(key)
