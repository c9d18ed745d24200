"""generate against every stream framing the emulator serves (Variants.stream_framing), through the MCP client.

Issue 18's rows: a stream that begins with a byte-order mark keeps its first chunk; a complete stream whose last
line `data: [DONE]` has no blank line after it is complete (a retry would spend the words again); an error event
after some text is an error result quoting the upstream, with the partial text and `maybe_processed`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest
from mcp import Client

from server.sandbox import EmulatorState
from server.sandbox.variants import Variants
from tests.results import data, error

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Write a tagline for a tea shop.", "max_tokens": 12}

COMPLETE = ["lf", "crlf", "cr", "bom", "bare_data", "extra_fields", "multiline_data", "done_unterminated",
            "final_chunk_unterminated", "no_done"]  # fmt: skip
FAILED: list[tuple[str, str, str]] = [
    ("error_event", "upstream_stream_error", "The model provider failed mid-generation. (PROVIDER_ERROR)"),
    ("error_data", "upstream_stream_error", "Upstream model overloaded. (server_error)"),
    ("cut_unterminated", "incomplete_stream", ""),
]


async def _generate(client: Client, state: EmulatorState, framing: str) -> Any:
    state.variants = dataclasses.replace(Variants(), stream_framing=framing)  # type: ignore[arg-type]
    with anyio.fail_after(30):
        return await client.call_tool("generate", GENERATE)


@pytest.mark.parametrize("framing", COMPLETE)
async def test_every_framing_of_a_complete_stream_gives_the_whole_text_once(
    client: Client, state: EmulatorState, framing: str
) -> None:
    expected = data(await _generate(client, state, "lf"))
    charged = state.words_charged
    result = data(await _generate(client, state, framing))
    assert result["text"] == expected["text"]  # the BOM's first chunk kept, nothing doubled or dropped
    assert (result["finish_reason"], result["words_used"]) == (expected["finish_reason"], expected["words_used"])
    assert state.words_charged == charged + result["words_used"]
    assert state.count("chat") == 2  # complete: nothing to repeat, no words spent twice


@pytest.mark.parametrize(("framing", "code", "said"), FAILED)
async def test_a_stream_that_fails_or_never_finishes_is_an_error_with_the_partial_text(
    client: Client, state: EmulatorState, framing: str, code: str, said: str
) -> None:
    expected = data(await _generate(client, state, "lf"))
    err = error(await _generate(client, state, framing))
    assert err["code"] == code
    assert err["maybe_processed"] is True
    assert err["request_id"]
    assert err["partial_text"]
    assert expected["text"].startswith(err["partial_text"])
    if said:
        assert err["upstream_error"] == said
        assert said in err["message"]
    assert state.count("chat") == 2  # never repeated: words may be spent
