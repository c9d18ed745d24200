"""Resources a user can attach to a conversation: snapshots, a workspace's quota, a brand voice.

Each is read through the same service, gate and error rules as the tool it stands beside, and offered
only while that tool is on. Listings and completions, which clients ask for on connect and on every
keystroke, go through a short cache in the runtime's store: at most one upstream request per account
and listing every `LISTING_TTL_S` seconds, shared by every session and process using that store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import pydantic_core
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, Resource

from server.errors import FlashsnapError, InvalidArguments, NotFound
from server.runtime import Runtime
from server.segments import SNAPSHOT_ID, WORKSPACE_ID, Segment, bounded
from server.state.store import KEEP, Change, Doc

log = logging.getLogger(__name__)

LISTING_TTL_S = 5.0  # long enough to absorb a burst of keystrokes, short enough to show a new snapshot soon
# A drop is remembered longer than any listing takes to fetch, so a slow fetch cannot outlive the mark.
DROP_MARK_TTL_S = 300.0
RECENT_SNAPSHOTS = 20  # how many of the newest snapshots resources/list offers
JSON = "application/json"

SNAPSHOT = "neuralsnap://snapshots/{snapshot_id}"
QUOTA = "neuroflash://workspaces/{workspace_id}/quota"
BRAND_VOICE = "neuroflash://workspaces/{workspace_id}/brand-voices/{brand_voice_id}"

# Each template, and the tools it reads through; the snapshots resources/list offers need list_snapshots too.
TEMPLATE_NEEDS: dict[str, tuple[str, ...]] = {
    SNAPSHOT: ("get_snapshot",),
    QUOTA: ("check_quota",),
    BRAND_VOICE: ("list_brand_voices",),
}
LISTING_NEEDS = ("list_snapshots", "get_snapshot")


def _malformed(kind: Segment, value: str) -> bool:
    """Whether `value` breaks the rule the tool holds this argument to (nothing is sent for it then)."""
    try:
        kind.check(value)
    except InvalidArguments:
        return True
    return False


def resource_needs(uri: str) -> tuple[str, ...]:
    """The tools a resource URI or template reads through (none for a URI of no template here)."""
    if uri.startswith("neuralsnap://snapshots/"):
        return TEMPLATE_NEEDS[SNAPSHOT]
    if uri.startswith("neuroflash://workspaces/"):
        return TEMPLATE_NEEDS[BRAND_VOICE] if "/brand-voices/" in uri else TEMPLATE_NEEDS[QUOTA]
    return ()


def template_of(uri: str) -> str | None:
    """The template a resource URI reads (what an audit record names); None for a URI of no template here."""
    if uri.startswith("neuralsnap://snapshots/"):
        return SNAPSHOT
    if uri.startswith("neuroflash://workspaces/"):
        return BRAND_VOICE if "/brand-voices/" in uri else QUOTA
    return None


# --- The short shared cache of listings.


async def cached(runtime: Runtime, key: str, fetch: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
    """A listing from the store while it is younger than `LISTING_TTL_S`, else fetched (and kept).

    A fetch during which the listing was dropped (a tool changed it meanwhile) is not kept: its answer may
    predate the change, and the next listing, the one a change notice prompts, must show it.
    """
    doc = await runtime.store.get(key)
    if doc is not None and isinstance(values := doc.get("values"), list):
        return values
    seen = _generation(doc)
    fresh = await fetch()

    def keep(current: Doc | None) -> Change[None]:
        if _generation(current) != seen:
            return Change(None, KEEP)
        return Change(None, {"values": fresh, "gen": seen}, LISTING_TTL_S)

    await runtime.store.update(key, keep)
    return fresh


def _generation(doc: Doc | None) -> int:
    """How many times the listing was dropped, as far as the store remembers (see `forget_snapshot_listing`)."""
    gen = doc.get("gen") if doc is not None else None
    return gen if isinstance(gen, int) else 0


async def workspace_values(runtime: Runtime, _: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every workspace id, with its name (cached listing)."""

    async def fetch() -> list[Any]:
        workspaces, _default = await runtime.neuroflash().list_workspaces()
        return [[w.id, w.name] for w in workspaces]

    return [(v[0], v[1]) for v in await cached(runtime, runtime.neuroflash().account.listing("workspaces"), fetch)]


async def brand_voice_values(runtime: Runtime, arguments: Mapping[str, str]) -> list[tuple[str, str]]:
    """The brand voice ids of the workspace given so far (else the default one), with their names (cached).

    Raises:
        InvalidArguments: the workspace given so far breaks the tool's rule for it (nothing is sent).
        FlashsnapError: what NeuroflashService.list_brand_voices raises.
    """
    workspace = arguments.get("workspace_id") or None
    if workspace is not None:
        WORKSPACE_ID.check(workspace)  # as list_brand_voices checks it: `..` or 100,000 characters never leave

    async def fetch() -> list[Any]:
        _workspace, voices = await runtime.neuroflash().list_brand_voices(workspace)
        return [[v.id, v.name] for v in voices]

    key = runtime.neuroflash().account.listing(f"voices:{workspace or '-'}")
    return [(v[0], v[1]) for v in await cached(runtime, key, fetch)]


async def snapshot_values(runtime: Runtime, _: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The newest snapshots' ids, with their names (cached)."""

    async def fetch() -> list[Any]:
        hits, _total = await runtime.neuralsnap().recent(RECENT_SNAPSHOTS)
        return [[hit.id, getattr(hit, "name", None) or hit.id] for hit in hits]

    key = runtime.neuralsnap().account.listing("snapshots")
    return [(v[0], v[1]) for v in await cached(runtime, key, fetch)]


async def forget_snapshot_listing(runtime: Runtime) -> None:
    """Drop the cached snapshot listing (after a tool changed it), so the next listing shows the change.

    Never raises: a store that cannot be written leaves the listing at most `LISTING_TTL_S` old.
    """
    try:
        # A mark, not a deletion: a listing fetched while it was set must not be kept after it (see `cached`).
        await runtime.store.update(
            runtime.neuralsnap().account.listing("snapshots"),
            lambda current: Change(None, {"gen": _generation(current) + 1}, DROP_MARK_TTL_S),
        )
    except Exception as exc:
        log.warning("the snapshot listing's cache was not dropped: %r", exc)


# Where each completed argument's values come from, and the tool that lists them (no completion when it is off).
Source = Callable[[Runtime, Mapping[str, str]], Awaitable[list[tuple[str, str]]]]
ARGUMENT_SOURCES: dict[str, tuple[str, Source]] = {
    "workspace_id": ("list_workspaces", workspace_values),
    "brand_voice_id": ("list_brand_voices", brand_voice_values),
    "snapshot_id": ("list_snapshots", snapshot_values),
}


# --- Reading.


def _refused(runtime: Runtime, exc: FlashsnapError) -> MCPError:
    """A failure as the tools would report it (masked; code, hint, retry_after_s in `data`)."""
    mask = runtime.mask
    payload = {k: mask.mask(v) if isinstance(v, str) else v for k, v in exc.payload().items()}
    code = INVALID_PARAMS if exc.code in ("not_found", "invalid_arguments") else INTERNAL_ERROR
    return MCPError(code, mask.mask(str(exc)), payload)


def _json(value: Any) -> str:
    return pydantic_core.to_json(value, indent=2).decode()


async def read_snapshot(runtime: Runtime, snapshot_id: str) -> str:
    """One snapshot, as get_snapshot returns it.

    Raises:
        NotFound: the id is not a UUID (nothing is sent), or NeuralSnap has no such snapshot.
        FlashsnapError: what NeuralSnapService.get raises.
    """
    if _malformed(SNAPSHOT_ID, snapshot_id):
        raise NotFound(f"{bounded(snapshot_id)!r} is not a snapshot id (a UUID); nothing was sent to NeuralSnap.")
    return _json(await runtime.neuralsnap().get(snapshot_id))


async def read_quota(runtime: Runtime, workspace_id: str) -> str:
    """A workspace's quotas, read afresh as check_quota reads them.

    Raises:
        NotFound: the workspace id is malformed (nothing is sent).
        FlashsnapError: what NeuroflashService.quota_status raises.
    """
    if _malformed(WORKSPACE_ID, workspace_id):
        raise NotFound(f"{bounded(workspace_id)!r} is not a workspace id; nothing was sent to neuroflash.")
    workspace, quotas = await runtime.neuroflash().quota_status(workspace_id)
    return _json({"workspace_id": workspace, "quotas": [q.model_dump(mode="json") for q in quotas]})


async def read_brand_voice(runtime: Runtime, workspace_id: str, brand_voice_id: str) -> str:
    """One brand voice of a workspace, from the list list_brand_voices reads.

    Raises:
        NotFound: the workspace id is malformed, or the workspace has no such voice.
        FlashsnapError: what NeuroflashService.list_brand_voices raises.
    """
    if _malformed(WORKSPACE_ID, workspace_id):
        raise NotFound(f"{bounded(workspace_id)!r} is not a workspace id; nothing was sent to neuroflash.")
    workspace, voices = await runtime.neuroflash().list_brand_voices(workspace_id)
    for voice in voices:
        if voice.id == brand_voice_id:
            return _json({"workspace_id": workspace, **voice.model_dump(mode="json")})
    raise NotFound(
        f"workspace {workspace} has no brand voice {bounded(brand_voice_id)!r}",
        hint="Read list_brand_voices (or complete brand_voice_id) for the voices and their ids.",
    )


async def _read(ctx: Context[Any, Any], read: Callable[[Runtime], Awaitable[str]]) -> str:
    runtime: Runtime = ctx.request_context.lifespan_context
    try:
        return await read(runtime)
    except FlashsnapError as exc:
        raise _refused(runtime, exc) from exc


def register(app: MCPServer[Any], enabled: Collection[str]) -> None:
    """Add the resource templates whose tools the operator turned on."""

    def on(template: str) -> bool:
        return all(tool in enabled for tool in TEMPLATE_NEEDS[template])

    if on(SNAPSHOT):

        @app.resource(SNAPSHOT, name="snapshot", title="NeuralSnap snapshot", mime_type=JSON)
        async def snapshot(ctx: Context[Any, Any], snapshot_id: str) -> str:
            """A snapshot of the user's NeuralSnap second brain, with all its fields."""
            return await _read(ctx, lambda rt: read_snapshot(rt, snapshot_id))

    if on(QUOTA):

        @app.resource(QUOTA, name="quota", title="neuroflash word quota", mime_type=JSON)
        async def quota(ctx: Context[Any, Any], workspace_id: str) -> str:
            """A neuroflash workspace's word quotas (daily and monthly), read afresh."""
            return await _read(ctx, lambda rt: read_quota(rt, workspace_id))

    if on(BRAND_VOICE):

        @app.resource(BRAND_VOICE, name="brand_voice", title="neuroflash brand voice", mime_type=JSON)
        async def brand_voice(ctx: Context[Any, Any], workspace_id: str, brand_voice_id: str) -> str:
            """A brand voice of a neuroflash workspace: its name, description and language."""
            return await _read(ctx, lambda rt: read_brand_voice(rt, workspace_id, brand_voice_id))


async def recent_snapshots(ctx: ServerRequestContext[Any, Any], on: Collection[str]) -> list[Resource]:
    """The newest snapshots as resources (cached listing); none when the tools they read through are off,
    or when NeuralSnap cannot be read (the tools report that)."""
    if not all(tool in on for tool in LISTING_NEEDS):
        return []
    try:
        values = await snapshot_values(ctx.lifespan_context)
    except FlashsnapError as exc:
        log.info("no snapshots listed: %s", exc.code)
        return []
    return [
        Resource(uri=f"neuralsnap://snapshots/{sid}", name=name, title=name, mime_type=JSON) for sid, name in values
    ]
