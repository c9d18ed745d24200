"""The emulator's fixed data: demo credentials, workspaces, plans and the model catalogue."""

from __future__ import annotations

from typing import Any

DEMO_CLIENT_ID = "sandbox-client"
DEMO_CLIENT_SECRET = "sandbox-secret-not-for-production"  # a public demo value
DEMO_API_KEY = "ns_test_sandbox_demo_key"

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
