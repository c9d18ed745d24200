"""Asking the user first: delete_snapshot always, generate and crystallize above FLASHSNAP_CONFIRM_WORDS.

Every way a client can be asked (pushed on 2025-11-25, in rounds on 2026-07-28, not at all), in memory and
over Streamable HTTP; what is sent upstream is read from the emulator's counters.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    ElicitRequestFormParams,
    ElicitRequestParams,
    ElicitResult,
)

from server.config import Settings
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.loopback import LoopbackServer
from server.sandbox.neuralsnap_app import new_snapshot
from server.transports.http import build_http_app
from tests.conftest import MODES, NO_QUESTIONS, Connect
from tests.results import data, error, text

DELETE = "snapshot_delete"
CHAT = "chat"
CRYSTALLIZE = "crystallize"
SNAPSHOT = {"name": "Consent", "core": "Ask before deleting."}
DEFAULT = {"FLASHSNAP_CONFIRM_WORDS": ""}  # blank counts as unset: the product's default, 1,000 words


class User:
    """The person behind the client's form: answers each question as told, and remembers what was asked."""

    def __init__(self, action: str = "accept", content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = {"confirm": True} if content is None and action == "accept" else content
        self.asked: list[ElicitRequestParams] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params)
        return ElicitResult(action=self.action, content=self.content)


async def saved(client: Client) -> str:
    snapshot_id: str = data(await client.call_tool("snapshot", SNAPSHOT))["id"]
    return snapshot_id


def still_there(state: EmulatorState, snapshot_id: str) -> bool:
    return snapshot_id in state.snapshots


@asynccontextmanager
async def over_http(
    emulator: Emulator, clock: Any, mode: str, user: User | None, *, sse: bool = False, **env: str
) -> AsyncIterator[Client]:
    environ = {**NO_QUESTIONS, **emulator.environment(), **env}
    settings = Settings.from_env(environ, transport="sse" if sse else "streamable-http", toolsets=("all",))
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        if sse:
            transport: Any = sse_client(f"{server.url}/sse")
        else:
            transport = streamable_http_client(f"{server.url}/mcp", http_client=httpx2.AsyncClient(timeout=30))
        async with Client(transport, mode=mode, elicitation_callback=user) as client:
            yield client


# --- delete_snapshot: always asked --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_an_accepted_question_deletes_once(connect: Connect, state: EmulatorState, mode: str) -> None:
    user = User("accept")
    async with connect(mode=mode, toolsets=("all",), elicitation=user) as client:
        snapshot_id = await saved(client)
        assert data(await client.call_tool("delete_snapshot", {"id": snapshot_id})) == {
            "id": snapshot_id,
            "deleted": True,
        }
    assert len(user.asked) == 1
    assert snapshot_id in user.asked[0].message
    assert "cannot be undone" in user.asked[0].message
    form = user.asked[0]
    assert isinstance(form, ElicitRequestFormParams)
    assert form.requested_schema["properties"]["confirm"]["type"] == "boolean"
    assert state.count(DELETE) == 1
    assert not still_there(state, snapshot_id)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (User("decline"), "declined"),
        (User("cancel"), "cancelled"),
        (User("accept", {"confirm": False}), "unticked"),
    ],
    ids=["decline", "cancel", "unticked"],
)
async def test_anything_but_yes_sends_nothing_and_says_so(
    connect: Connect, state: EmulatorState, mode: str, answer: User, says: str
) -> None:
    async with connect(mode=mode, toolsets=("all",), elicitation=answer) as client:
        snapshot_id = await saved(client)
        err = error(await client.call_tool("delete_snapshot", {"id": snapshot_id}))
    assert err["code"] == "declined"
    assert says in err["message"]
    assert "nothing was sent" in err["message"]
    assert state.count(DELETE) == 0
    assert still_there(state, snapshot_id)


@pytest.mark.parametrize("mode", MODES)
async def test_confirm_true_cannot_skip_the_question_of_a_client_that_can_ask(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    user = User("decline")
    async with connect(mode=mode, toolsets=("all",), elicitation=user) as client:
        snapshot_id = await saved(client)
        err = error(await client.call_tool("delete_snapshot", {"id": snapshot_id, "confirm": True}))
    assert err["code"] == "declined"
    assert len(user.asked) == 1
    assert state.count(DELETE) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_cannot_ask_gets_confirm_first_and_its_confirm_goes_through(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    async with connect(mode=mode, toolsets=("all",)) as client:  # no elicitation capability
        snapshot_id = await saved(client)
        first = await client.call_tool("delete_snapshot", {"id": snapshot_id})
        err = error(first)
        assert err["code"] == "confirmation_required"
        assert snapshot_id in err["message"]
        assert "confirm: true" in text(first)
        assert state.count(DELETE) == 0
        assert data(await client.call_tool("delete_snapshot", {"id": snapshot_id, "confirm": True}))["deleted"]
    assert state.count(DELETE) == 1


# --- generate and crystallize: asked above FLASHSNAP_CONFIRM_WORDS -----------------------------------------


@pytest.mark.parametrize(
    ("max_tokens", "asked"),
    [
        (None, False),  # the server's own bound, fitted under the threshold: never asked for a plain call
        (1332, False),  # the prompt's 1 word + 999 words at 0.75 words a token: within 1,000
        (1333, True),  # 1 + 999.75 words
        (64_000, True),
    ],
)
async def test_generate_asks_above_the_default_threshold(
    connect: Connect, state: EmulatorState, max_tokens: int | None, asked: bool
) -> None:
    user = User("decline")
    args: dict[str, Any] = {"model": "gpt-4.1-mini", "prompt": "Hi"}
    if max_tokens is not None:
        args["max_tokens"] = max_tokens
    async with connect(env=DEFAULT, elicitation=user) as client:
        result = await client.call_tool("generate", args)
    assert len(user.asked) == int(asked)
    if asked:
        assert error(result)["code"] == "declined"
        assert "words" in user.asked[0].message
        assert "FLASHSNAP" not in user.asked[0].message
        assert state.count(CHAT) == 0
    else:
        assert data(result)["words_used"] > 0
        assert state.count(CHAT) == 1


@pytest.mark.parametrize(
    ("chars", "asked"),
    [
        (2_664, False),  # 666 tokens read at 4 characters a token, as many again written: 1,332, 999 words' worth
        (2_665, True),  # 667 read: 1,334 tokens, 1,000.5 words' worth
        (100_000, True),
    ],
)
async def test_crystallize_asks_by_the_tokens_its_text_spends(
    connect: Connect, state: EmulatorState, chars: int, asked: bool
) -> None:
    user = User("decline")
    async with connect(env=DEFAULT, toolsets=("all",), elicitation=user) as client:
        result = await client.call_tool("crystallize", {"text": "x" * chars})
    assert len(user.asked) == int(asked)
    assert state.count(CRYSTALLIZE) == int(not asked)
    if asked:
        assert error(result)["code"] == "declined"
        assert f"{chars:,} characters" in user.asked[0].message


async def test_crystallize_under_the_threshold_does_not_spend_more_than_it_unasked(
    connect: Connect, state: EmulatorState
) -> None:
    """The estimate counts the text read (4 characters a token) and the tokens of the snapshots written back,
    which NeuralSnap charges too (`totalTokensOut`, 60 a snapshot here, up to 5). A 5,332-character text in
    five paragraphs would spend 1,633 tokens, 1,225 words' worth: above the 1,000 words (1,333 tokens) the
    server spends unasked, so it is asked, or spends no more than that."""
    paragraph = ("Notes worth keeping are notes you can find again. " * 21)[:1060]
    text = "\n\n".join([paragraph] * 5)
    text += "x" * (5_332 - len(text))
    assert len(text) == 5_332
    user = User("decline")
    async with connect(env=DEFAULT, toolsets=("all",), elicitation=user) as client:
        outcome = await client.call_tool("crystallize", {"text": text})
    if not user.asked:
        spent = data(outcome)["tokens"]
        assert spent * 0.75 <= 1_000, f"spent {spent} crystallize tokens unasked"
    else:
        assert state.count(CRYSTALLIZE) == 0


async def test_crystallize_asks_from_the_first_character_over_the_line(connect: Connect, state: EmulatorState) -> None:
    """The instructions say "more than about 2,664 characters asks": 2,665 (1,334 tokens, 1,000.5 words) does."""
    user = User("decline")
    async with connect(env=DEFAULT, toolsets=("all",), elicitation=user) as client:
        assert "more than about 2,664 characters" in (client.instructions or "")
        assert error(await client.call_tool("crystallize", {"text": "x" * 2_665}))["code"] == "declined"
    assert len(user.asked) == 1
    assert state.count(CRYSTALLIZE) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_threshold_of_zero_never_asks_but_delete_still_does(
    connect: Connect, state: EmulatorState, mode: str
) -> None:
    user = User("accept")
    env = {"FLASHSNAP_CONFIRM_WORDS": "0"}
    async with connect(mode=mode, env=env, toolsets=("all",), elicitation=user) as client:
        data(await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi"}))
        data(await client.call_tool("crystallize", {"text": "y" * 50_000}))
        assert user.asked == []
        data(await client.call_tool("delete_snapshot", {"id": await saved(client)}))
    assert len(user.asked) == 1


# --- over Streamable HTTP: sessions, stateless --------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stateless", ["0", "1"])
async def test_over_http_an_accepted_question_deletes_and_a_declined_one_sends_nothing(
    emulator: Emulator, clock: Any, state: EmulatorState, mode: str, stateless: str
) -> None:
    pushed_without_session = mode == "legacy" and stateless == "1"
    for action, deletes in (("decline", 0), ("accept", 1)):
        user = User(action)
        async with over_http(emulator, clock, mode, user, FLASHSNAP_HTTP_STATELESS=stateless) as client:
            snapshot_id = await saved(client)
            result = await client.call_tool("delete_snapshot", {"id": snapshot_id})
            if pushed_without_session:
                # A 2025-11-25 client on stateless HTTP cannot receive a pushed question: confirm-first instead.
                assert error(result)["code"] == "confirmation_required"
                assert user.asked == []
                result = await client.call_tool("delete_snapshot", {"id": snapshot_id, "confirm": action == "accept"})
                if action == "decline":
                    assert error(result)["code"] == "confirmation_required"
                    continue
            elif action == "decline":
                assert error(result)["code"] == "declined"
            else:
                assert data(result)["deleted"]
            assert len(user.asked) == int(not pushed_without_session)
        assert state.count(DELETE) == deletes
        assert still_there(state, snapshot_id) == (deletes == 0)


async def test_the_instructions_say_when_the_user_is_asked(connect: Connect) -> None:
    async with connect(env=DEFAULT, toolsets=("all",)) as client:
        said = client.instructions or ""
        assert "could spend more than 1,000 words asks the user first" in said
        assert "without max_tokens sends the server's own bound" in said
        assert "more than about 2,664 characters" in said  # crystallize's estimate: read and written back
        assert "delete_snapshot asks the user first" in said
    async with connect(toolsets=("all",)) as client:  # FLASHSNAP_CONFIRM_WORDS=0: only deleting asks
        said = client.instructions or ""
        assert "words asks the user first" not in said
        assert "characters asks" not in said
        assert "delete_snapshot asks the user first" in said


@pytest.mark.parametrize("action", ["decline", "accept"])
async def test_over_sse_the_question_is_pushed(
    emulator: Emulator, clock: Any, state: EmulatorState, action: str
) -> None:
    user = User(action)
    async with over_http(emulator, clock, "legacy", user, sse=True) as client:
        snapshot_id = await saved(client)
        result = await client.call_tool("delete_snapshot", {"id": snapshot_id})
    assert len(user.asked) == 1
    assert (error(result)["code"] == "declined") if action == "decline" else data(result)["deleted"]
    assert state.count(DELETE) == int(action == "accept")


@pytest.mark.parametrize(
    ("capabilities", "asked"),
    [
        ({}, False),  # capabilities, but no elicitation (2026-07-28 requires the key itself)
        ({"elicitation": {}}, True),  # the bare form, from before elicitation had modes: form
        ({"elicitation": {"form": {}}}, True),
        ({"elicitation": {"url": {}}}, False),  # url-only cannot show a form
        ({"elicitation": {"form": {}, "url": {}}}, True),
    ],
    ids=["none", "bare", "form", "url-only", "both"],
)
async def test_every_shape_of_the_capability_is_read_as_the_spec_means_it(
    emulator: Emulator, clock: Any, state: EmulatorState, capabilities: dict[str, Any], asked: bool
) -> None:
    """A sessionless 2026-07-28 request, written by hand: the capability rides in the request's `_meta`."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    }
    kept = new_snapshot(SNAPSHOT, state.api_keys[catalog.DEMO_API_KEY], state.clock.now())
    state.add_snapshot(kept)  # one that exists: a missing one is refused without a question
    snapshot_id = kept["id"]
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "delete_snapshot", "arguments": {"id": snapshot_id}, "_meta": meta},
    }
    environ = {**NO_QUESTIONS, **emulator.environment()}
    settings = Settings.from_env(environ, transport="streamable-http", toolsets=("all",), http_stateless=True)
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server, anyio.fail_after(30):
        async with httpx2.AsyncClient(timeout=30) as http:
            response = await http.post(
                f"{server.url}/mcp",
                json=call,
                headers={
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2026-07-28",
                    "Mcp-Method": "tools/call",
                    "Mcp-Name": "delete_snapshot",
                },
            )
    assert response.status_code == 200, response.text
    body = response.json() if response.headers["content-type"].startswith("application/json") else sse_data(response)
    result = body["result"]
    if asked:
        assert result["resultType"] == "input_required"
        question = result["inputRequests"]["confirm"]
        assert question["method"] == "elicitation/create"
        assert snapshot_id in question["params"]["message"]
    else:
        assert result["isError"] is True
        assert result["_meta"]["io.flashsnap/error"]["code"] == "confirmation_required"
    assert state.count(DELETE) == 0


def sse_data(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC answer in a one-event SSE response."""
    lines = [line.removeprefix("data:").strip() for line in response.text.splitlines() if line.startswith("data:")]
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer
