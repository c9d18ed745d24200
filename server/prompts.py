"""What the model reads besides the tools: the server's instructions, built from the tools that are on.

Every sentence here that names a tool is kept only when that tool is on, so a model is never told about a
tool it cannot call (`--read-only`, `--tools`, `--toolsets`).
"""

from __future__ import annotations

from collections.abc import Collection

# Which tool is for what, in the order a model meets them.
PURPOSES: dict[str, str] = {
    "list_workspaces": "list_workspaces: the neuroflash workspaces and their ids (the default one is marked).",
    "check_quota": "check_quota: the words left today and this month, when they reset, and how long a call would wait.",
    "list_models": "list_models: the model ids a workspace can write with.",
    "generate": "generate: write text with a neuroflash model (spends words from the workspace's quota).",
    "list_brand_voices": "list_brand_voices: the brand voices (how texts should sound), with their ids.",
    "list_twins": "list_twins: the digital-twin audiences, and the twins in one.",
    "ask_twins": "ask_twins: ask twins (a simulated audience) for feedback on copy (may spend quota).",
    "snapshot": "snapshot: save one structured thought to the user's NeuralSnap second brain.",
    "search_snapshots": "search_snapshots: find saved snapshots by meaning.",
    "get_snapshot": "get_snapshot: one saved thought by its id, with all its fields.",
    "list_snapshots": "list_snapshots: page through saved snapshots, newest first.",
    "crystallize": "crystallize: turn a long text or a conversation into snapshots (spends crystallize tokens).",
    "update_snapshot": "update_snapshot: change fields of a saved thought.",
    "delete_snapshot": "delete_snapshot: delete a saved thought for good; ask the user first.",
}

# The calls that create or spend: repeating one after an unclear failure may do it twice.
SPENDING = ("generate", "ask_twins", "snapshot", "crystallize")

SANDBOX_NOTE = """
SANDBOX MODE: this server talks to a local emulator with demo data, not the real services.
Nothing generated or saved here is real, and no real quota is spent."""


def _names(names: Collection[str]) -> str:
    listed = list(names)
    return listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " or " + listed[-1]


def _quota_lines(enabled: Collection[str]) -> list[str]:
    lines = []
    if "generate" in enabled:
        quota = "Quotas: generate spends words from the workspace's daily and monthly quota"
        quota += "; check_quota says what is left and when it resets." if "check_quota" in enabled else "."
        lines.append(quota + " A generation the quota cannot cover is refused before anything is sent.")
    elif "check_quota" in enabled:
        lines.append("Quotas: check_quota says what is left of a workspace's words and when they reset.")
    if "generate" in enabled and "list_brand_voices" in enabled:
        lines.append("A brand_voice_id from list_brand_voices makes generate write in that brand voice.")
    if "crystallize" in enabled:
        lines.append("crystallize spends the NeuralSnap plan's monthly crystallize tokens.")
    return lines


def _safety_lines(enabled: Collection[str]) -> list[str]:
    lines = [
        "Waits: a call waits up to max_wait_s (default 30 s) for a rate limit or a free slot; when it cannot, "
        "it fails with rate_limited and retry_after_s says when to try again.",
        "Failed calls say what happened and what to do. maybe_processed true means the request may have reached "
        "the service and been carried out even though no answer came back.",
    ]
    if spending := [name for name in SPENDING if name in enabled]:
        check = " (search_snapshots shows whether a thought was saved)" if "search_snapshots" in enabled else ""
        lines.append(
            f"Never repeat a call that creates or spends ({_names(spending)}): after a failure with "
            f"maybe_processed true, check first whether it happened{check}; never retry it blindly."
        )
    return lines


def instructions(enabled: Collection[str], *, sandbox: bool = False) -> str:
    """The server's instructions for the tools in `enabled`: what each is for, quotas and waits, what
    `maybe_processed` means, and never repeating a spending call. No tool outside `enabled` is named."""
    lines = ["flashsnap-mcp connects you to neuroflash (AI writing) and NeuralSnap (the user's second brain)."]
    lines.append("Tools on in this server:")
    lines += [f"- {line}" for name, line in PURPOSES.items() if name in enabled]
    lines += _quota_lines(enabled)
    lines += _safety_lines(enabled)
    return "\n".join(lines) + (SANDBOX_NOTE if sandbox else "")
