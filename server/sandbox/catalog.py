"""The emulator's fixed data: demo credentials, workspaces, plans and the model catalogue."""

from __future__ import annotations

from typing import Any

DEMO_CLIENT_ID = "sandbox-client"
DEMO_CLIENT_SECRET = "sandbox-secret-not-for-production"  # a public demo value
DEMO_API_KEY = "ns_test_sandbox_demo_key"
SECOND_BRAIN = "5e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"  # the demo key's other brain (brain_id); its default is its own

MARKETING_WORKSPACE = "7d4f1c2e-8a3b-4e5f-9c6d-1a2b3c4d5e6f"
SIDE_PROJECT_WORKSPACE = "0b9e8d7c-6f5a-4b3c-8d2e-1f0a9b8c7d6e"

MODELS: tuple[dict[str, Any], ...] = (
    {
        "id": "gpt-4.1-mini",
        "name": "GPT-4.1 mini",
        "provider": "openai",
        "context_window": 128_000,
        "reasoning_model": False,
    },
    {
        "id": "gpt-4.1",
        "name": "GPT-4.1",
        "provider": "openai",
        "context_window": 1_047_576,
        "reasoning_model": False,
    },
    {
        "id": "o4-mini",
        "name": "o4-mini",
        "provider": "openai",
        "context_window": 200_000,
        "reasoning_model": True,
    },
    {
        "id": "claude-haiku-4.5",
        "name": "Claude Haiku 4.5",
        "provider": "anthropic",
        "context_window": 200_000,
        "reasoning_model": False,
    },
    {
        "id": "claude-sonnet-4.5",
        "name": "Claude Sonnet 4.5",
        "provider": "anthropic",
        "context_window": 200_000,
        "reasoning_model": True,
    },
    {
        "id": "gemini-2.5-flash",
        "name": "Gemini 2.5 Flash",
        "provider": "google",
        "context_window": 1_048_576,
        "reasoning_model": False,
    },
    {
        "id": "gemini-2.5-pro",
        "name": "Gemini 2.5 Pro",
        "provider": "google",
        "context_window": 1_048_576,
        "reasoning_model": True,
    },
    {
        "id": "mistral-small",
        "name": "Mistral Small",
        "provider": "mistral",
        "context_window": 32_000,
        "reasoning_model": False,
    },
    {
        "id": "mistral-large",
        "name": "Mistral Large",
        "provider": "mistral",
        "context_window": 128_000,
        "reasoning_model": False,
    },
)

# Which models each plan makes `available`.
PLANS: dict[str, frozenset[str]] = {
    "business": frozenset(m["id"] for m in MODELS),
    "free": frozenset({"gpt-4.1-mini", "claude-haiku-4.5", "gemini-2.5-flash", "mistral-small"}),
}

# The sentences the emulator's deterministic "model" writes with.
SENTENCES = (
    "Clear ideas travel further when each sentence carries one thought.",
    "Readers remember stories more than lists, so open with a moment.",
    "Good copy respects the reader's time and names the benefit plainly.",
    "Every paragraph should earn its place or make room for one that does.",
    "Show the change your product causes, not the features it has.",
    "End with a single next step the reader can take today.",
    "Short words win when the message matters.",
    "Write the headline last, once you know what the page promises.",
    "Cut the first sentence; the second one is usually where it starts.",
    "Specific numbers persuade where adjectives only decorate.",
    "Say it to one person, and many will listen.",
    "Notes you can find again are worth twice the notes you keep.",
)

# Brand voices of the marketing workspace (the brand-voice service's list).
BRAND_VOICES: tuple[dict[str, Any], ...] = (
    {
        "id": "bv-7c1e5a90",
        "name": "Friendly expert",
        "description": "Warm, clear and confident; short sentences, active voice, no jargon.",
        "language": "en",
    },
    {
        "id": "bv-3f9d2b14",
        "name": "Formal German",
        "description": "Sie-Form, precise and courteous; full sentences, no exclamation marks.",
        "language": "de",
    },
)


def voice_prompt(voice: dict[str, Any]) -> str:
    """The system prompt a brand voice renders to (the same text from ds-prompt and the summaries route)."""
    return f"## Brand Voice: {voice['name']}\nWrite every text in this voice. {voice['description']}"


# Digital twins: the static groups and their members.
TWIN_GROUPS: tuple[dict[str, Any], ...] = (
    {"key": "gen-z-de", "name": "Gen Z in Germany", "description": "18 to 26, urban, mobile first."},
    {"key": "cfo-dach", "name": "CFOs in DACH", "description": "Finance leaders of mid-sized companies."},
)
TWINS: dict[str, tuple[dict[str, Any], ...]] = {
    "gen-z-de": (
        {"id": "tw-lena-21", "name": "Lena, 21", "description": "Student in Berlin; values honesty."},
        {"id": "tw-jonas-24", "name": "Jonas, 24", "description": "Junior designer; skims, loves visuals."},
    ),
    "cfo-dach": ({"id": "tw-petra-52", "name": "Petra, 52", "description": "CFO in Vienna; wants numbers first."},),
}
