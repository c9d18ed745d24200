"""Which reading of the vendors' pages the emulator serves: one setting per place the pages disagree.

`../shared/upstream-contract.md` ("Where the vendors' own pages disagree") lists each variant with
its page. The emulator serves the default reading unless a test sets a field, or a named profile
is chosen: `FLASHSNAP_SANDBOX_PROFILE=name[,name…]` for `--sandbox` (every process of a sandbox
must name the same profiles, as they emulate one upstream), `Variants.profile(...)` in tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

ChatPaths = Literal["reference", "overview", "both"]
ErrorBodies = Literal["codes", "codeless", "not_json"]
WorkspaceEnvelope = Literal["data", "bare", "hal"]
RateModel = Literal["hourly", "per_minute", "per_endpoint"]
Plan = Literal["starter", "free", "pro", "business"]
SnapshotShape = Literal["api", "concepts"]
SnapshotUpdate = Literal["patch", "put", "both"]
VoicePrompt = Literal["ds-prompt", "summaries", "both"]
# How a chat stream is framed: each way the SSE standard allows, and the endings and errors streams have shown.
StreamFraming = Literal[
    "lf",  # the contract's: `data: {…}` LF LF, then `data: [DONE]`
    "crlf",  # CRLF line ends
    "cr",  # CR line ends
    "bom",  # a byte-order mark before the first event
    "bare_data",  # `data:{…}`, no space after the colon
    "extra_fields",  # comments, `event: message`, `id:` and `retry:` around each event, and an unknown field
    "multiline_data",  # each chunk's JSON spread over several `data:` lines
    "done_unterminated",  # the last line `data: [DONE]` with no line end and no blank line after it
    "final_chunk_unterminated",  # no [DONE]; the last chunk (finish_reason, usage) ends without its blank line
    "no_done",  # no [DONE]; the last chunk (finish_reason, usage) ends properly
    "cut_unterminated",  # the second text chunk is cut off before its blank line and the stream ends: incomplete
    "error_event",  # after the first text, `event: error` with an error body, then the end
    "error_data",  # after the first text, `data: {"error": {…}}`, then the end
]
# What the token endpoint answers a valid client: each form RFC 6749 allows, and what real servers send.
TokenAnswer = Literal[
    "standard",  # {"access_token", "token_type": "Bearer", "expires_in": <int>}
    "no_expires_in",  # expires_in left out (the RFC only RECOMMENDS it)
    "string_expires_in",  # "expires_in": "14399"
    "lowercase_type",  # "token_type": "bearer"
    "error_in_200",  # HTTP 200 with {"error": "invalid_client", "error_description": …}: a rejection
]
HeaderOddity = Literal[
    "reset_ms", "reset_relative", "reset_past", "reset_far", "remaining_above_limit", "remaining_negative", "limit_zero"
]


@dataclass
class Variants:
    """The emulator's reading of each disputed point; the defaults are the contract's main text."""

    # neuroflash
    chat_paths: ChatPaths = "reference"  # which chat-completions routes exist (reference page, overview page, both)
    models_route: bool = True  # False: …/model_selection/models answers the gateway's 404
    error_bodies: ErrorBodies = "codes"  # error bodies with the assumed codes, without any, or an HTML page
    workspace_envelope: WorkspaceEnvelope = "data"  # {"data": […]}, a bare array, or HAL's _embedded
    # A brand voice's system prompt: POST …/brand-voices/{id}/ds-prompt (brand-voice pages), POST
    # /api/v1/workspaces/{ws}/brand-voice-summaries (the newer page), or both; the other answers the gateway's 404.
    voice_prompt: VoicePrompt = "ds-prompt"
    stream_framing: StreamFraming = "lf"  # how chat streams are framed (see StreamFraming)
    token_answer: TokenAnswer = "standard"  # how the token endpoint's 200 is written (see TokenAnswer)
    # NeuralSnap
    rate_model: RateModel = "hourly"  # one hourly budget per key; per key per minute; per endpoint with bursts
    plan: Plan = "free"  # starter has no API access (403 on every call)
    time_scale: float = 1.0  # a window's seconds are multiplied by this (tests: a "minute" of a few seconds)
    monthly_spent: frozenset[str] = frozenset()  # "search", "crystallize": answer 429 until the next cycle
    snapshot_shape: SnapshotShape = "api"  # api: emotion object, steps string; concepts: emotion string, steps list
    header_oddities: frozenset[HeaderOddity] = frozenset()  # X-RateLimit-* values as broken upstreams send them
    nested_errors: bool = False  # NeuralSnap's {"error": {"code", "message", "details"}} form
    # The pages do not show the update verb: PATCH (merge), PUT (replace the whole), or both; the other answers 405.
    snapshot_update: SnapshotUpdate = "patch"
    extra: dict[str, Any] = field(default_factory=dict)  # room for later variants without a schema change

    @classmethod
    def profile(cls, *names: str) -> Variants:
        """The variants of the named profiles, applied in order (later names win).

        Raises:
            ValueError: a name is not a profile; the message lists the profiles.
        """
        variants = cls()
        for name in names:
            if name not in PROFILES:
                raise ValueError(f"unknown sandbox profile {name!r}; profiles: {', '.join(sorted(PROFILES))}")
            variants = dataclasses.replace(variants, **PROFILES[name])
        return variants


PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "overview-chat-path": {"chat_paths": "overview"},
    "both-chat-paths": {"chat_paths": "both"},
    "no-models-route": {"models_route": False},
    "codeless-errors": {"error_bodies": "codeless"},
    "html-errors": {"error_bodies": "not_json"},
    "bare-workspaces": {"workspace_envelope": "bare"},
    "hal-workspaces": {"workspace_envelope": "hal"},
    "per-minute": {"rate_model": "per_minute", "plan": "pro"},
    "per-endpoint": {"rate_model": "per_endpoint"},
    "starter-plan": {"plan": "starter"},
    "search-quota-spent": {"monthly_spent": frozenset({"search"})},
    "concepts-snapshots": {"snapshot_shape": "concepts"},
    "nested-errors": {"nested_errors": True},
    "ms-rate-reset": {"header_oddities": frozenset({"reset_ms"})},
    "voice-summaries": {"voice_prompt": "summaries"},
    "put-updates": {"snapshot_update": "put"},
    "crystallize-quota-spent": {"monthly_spent": frozenset({"crystallize"})},
    "crlf-streams": {"stream_framing": "crlf"},
    "bom-streams": {"stream_framing": "bom"},
    "no-expires-in": {"token_answer": "no_expires_in"},
}
