"""The chat stream reader (server/neuroflash/sse.py), one row per framing the SSE standard allows and per ending.

Each row is the body as the network hands it over (a list of chunks, split anywhere), and what must come of it:
the whole text and its finish, an incomplete stream with the text so far, or the upstream's error quoted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.errors import IncompleteStream, UpstreamStreamError, UpstreamUnavailable
from server.neuroflash.sse import ChatReading, Event, EventDecoder, read_chat


def chunk(text: str | None = None, *, finish: str | None = None, words: int | None = None) -> str:
    body: dict[str, Any] = {"id": "gen-1", "model": "openai/gpt-4.1-mini"}
    delta = {"content": text} if text is not None else {}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    if words is not None:
        body["usage"] = {"words_used": words}
    return json.dumps(body)


HELLO, WORLD, END = chunk("Hello"), chunk(" world"), chunk(finish="stop", words=2)


def lf(*datas: str, end: str = "\n") -> str:
    return "".join(f"data: {d}{end}{end}" for d in datas)


COMPLETE = "complete"
INCOMPLETE = "incomplete"
ERROR = "error"

# (name, chunks, outcome, text: whole text / partial text, upstream words in the error)
ROWS: list[tuple[str, list[bytes], str, str, str]] = [
    ("lf", [lf(HELLO, WORLD, END, "[DONE]").encode()], COMPLETE, "Hello world", ""),
    ("crlf", [lf(HELLO, WORLD, END, "[DONE]", end="\r\n").encode()], COMPLETE, "Hello world", ""),
    ("cr", [lf(HELLO, WORLD, END, "[DONE]", end="\r").encode()], COMPLETE, "Hello world", ""),
    ("mixed line ends", [f"data: {HELLO}\r\n\ndata: {WORLD}\r\rdata: {END}\n\r\ndata: [DONE]\n\n".encode()],
     COMPLETE, "Hello world", ""),
    ("crlf split between chunks", [f"data: {HELLO}\r".encode(), f"\n\r\ndata: {WORLD}\r\n\r".encode(),
     f"\ndata: {END}\r\n\r\ndata: [DONE]\r\n\r\n".encode()], COMPLETE, "Hello world", ""),
    ("byte-order mark first", [b"\xef\xbb\xbf" + lf(HELLO, WORLD, END, "[DONE]").encode()],
     COMPLETE, "Hello world", ""),
    ("byte-order mark split across chunks",
     [b"\xef", b"\xbb\xbf" + lf(HELLO).encode(), lf(WORLD, END, "[DONE]").encode()], COMPLETE, "Hello world", ""),
    ("a second BOM is data, not skipped", [b"\xef\xbb\xbf\xef\xbb\xbf" + lf(HELLO, WORLD, END, "[DONE]").encode()],
     COMPLETE, " world", ""),  # the field name is then "\ufeffdata": unknown, so the first event has no data
    ("data: without the space", ["".join(f"data:{d}\n\n" for d in (HELLO, WORLD, END, "[DONE]")).encode()],
     COMPLETE, "Hello world", ""),
    ("comments, event, id, retry and unknown fields", [
        f": hi\nevent: message\nid: 1\nretry: 10\nx: y\ndata: {HELLO}\n\n: keep-alive\n\n".encode(),
        f"id\nretry: soon\ndata: {WORLD}\n\ndata: {END}\n\ndata: [DONE]\n\n".encode()], COMPLETE, "Hello world", ""),
    ("multi-line data", ["".join("".join(f"data: {line}\n" for line in json.dumps(json.loads(d), indent=1).split("\n"))
     + "\n" for d in (HELLO, WORLD, END)).encode() + b"data: [DONE]\n\n"], COMPLETE, "Hello world", ""),
    ("one byte at a time", [bytes([b]) for b in lf(HELLO, WORLD, END, "[DONE]", end="\r\n").encode()],
     COMPLETE, "Hello world", ""),
    ("a character split between chunks", [lf(chunk("Grü")).encode()[:-8], lf(chunk("Grü")).encode()[-8:],
     lf(END, "[DONE]").encode()], COMPLETE, "Grü", ""),
    ("[DONE] with no blank line after it", [(lf(HELLO, WORLD, END) + "data: [DONE]\n").encode()],
     COMPLETE, "Hello world", ""),
    ("[DONE] with no line end at all", [(lf(HELLO, WORLD, END) + "data: [DONE]").encode()],
     COMPLETE, "Hello world", ""),
    ("[DONE] cut after its CR", [(lf(HELLO, WORLD, END) + "data: [DONE]\r").encode()], COMPLETE, "Hello world", ""),
    ("no [DONE]: the last chunk has finish_reason and usage", [lf(HELLO, WORLD, END).encode()],
     COMPLETE, "Hello world", ""),
    ("no [DONE]: that last chunk cut before its blank line", [(lf(HELLO, WORLD) + f"data: {END}").encode()],
     COMPLETE, "Hello world", ""),
    ("a text chunk cut before its blank line is discarded", [(lf(HELLO) + f"data: {WORLD}\n").encode()],
     INCOMPLETE, "Hello", ""),
    ("half a JSON text at the end is discarded", [(lf(HELLO) + f"data: {WORLD[:20]}").encode()],
     INCOMPLETE, "Hello", ""),
    ("a finish_reason without usage does not finish", [lf(HELLO, chunk(finish="stop")).encode()],
     INCOMPLETE, "Hello", ""),
    ("ended with no sign of finishing", [lf(HELLO, WORLD).encode()], INCOMPLETE, "Hello world", ""),
    ("nothing at all", [b""], INCOMPLETE, "", ""),
    ("only comments", [b": ping\n\n: ping\n\n"], INCOMPLETE, "", ""),
    ("error event", [(lf(HELLO) + 'event: error\ndata: {"error": {"message": "provider failed", '
     '"code": "PROVIDER_ERROR"}}\n\n').encode()], ERROR, "Hello", "provider failed (PROVIDER_ERROR)"),
    ("error as data", [(lf(HELLO) + 'data: {"error": "Upstream overloaded"}\n\n').encode()],
     ERROR, "Hello", "Upstream overloaded"),
    ("error event with plain text", [(lf(HELLO) + "event: error\ndata: it broke\n\n").encode()],
     ERROR, "Hello", "it broke"),
    ("error event cut before its blank line", [(lf(HELLO) + 'event: error\ndata: {"error": "gone"}').encode()],
     ERROR, "Hello", "gone"),
    ("error after the finish, before [DONE]", [(lf(HELLO, END) + 'data: {"error": "late"}\n\n').encode()],
     ERROR, "Hello", "late"),
]  # fmt: skip


async def _body(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for piece in chunks:
        yield piece


@pytest.mark.parametrize(("chunks", "outcome", "text", "said"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
async def test_each_framing_reads_as_the_standard_says(chunks: list[bytes], outcome: str, text: str, said: str) -> None:
    relayed: list[str] = []

    async def sink(piece: str) -> None:
        relayed.append(piece)

    reading = ChatReading("req-1")
    if outcome == COMPLETE:
        result = await read_chat(_body(chunks), reading, sink)
        assert result.text == text
        assert result.finish_reason == "stop"
        assert result.request_id == "req-1"
        assert "".join(relayed) == text
        return
    with pytest.raises(UpstreamUnavailable) as caught:
        await read_chat(_body(chunks), reading, sink)
    err = caught.value
    assert err.maybe_processed is True  # words may be spent: never repeated automatically
    assert err.request_id == "req-1"
    assert err.details["partial_text"] == text
    if outcome == INCOMPLETE:
        assert type(err) is IncompleteStream
    else:
        assert isinstance(err, UpstreamStreamError)
        assert err.details["upstream_error"] == said
        assert said in err.message


async def test_words_and_model_come_from_the_stream() -> None:
    async def sink(piece: str) -> None:
        return None

    result = await read_chat(
        _body([lf(HELLO, chunk(finish="length", words=7), "[DONE]").encode()]), ChatReading(None), sink
    )
    assert (result.words_used, result.finish_reason, result.model) == (7, "length", "openai/gpt-4.1-mini")


DECODER_ROWS: list[tuple[str, bytes, list[Event]]] = [
    ("fields", b"event: delta\nid: 42\nretry: 1500\ndata: a\n\n", [Event("a", "delta", "42", 1500)]),
    ("two data lines", b"data: a\ndata:  b\n\n", [Event("a\n b")]),
    ("empty data", b"data\n\n", [Event("")]),
    ("no data: nothing dispatched", b"event: x\nid: 1\n\n", []),
    ("id with NUL ignored", b"id: a\x00b\ndata: x\n\n", [Event("x")]),
    ("the id carries over", b"id: 9\ndata: x\n\ndata: y\n\n", [Event("x", id="9"), Event("y", id="9")]),
    ("event type resets after each event", b"event: e\ndata: x\n\ndata: y\n\n", [Event("x", "e"), Event("y")]),
    ("unterminated last event", b"data: x\n\ndata: y", [Event("x"), Event("y", complete=False)]),
]  # fmt: skip


@pytest.mark.parametrize(("body", "events"), [r[1:] for r in DECODER_ROWS], ids=[r[0] for r in DECODER_ROWS])
def test_the_decoder_follows_the_standard(body: bytes, events: list[Event]) -> None:
    decoder = EventDecoder()
    assert [*decoder.feed(body), *decoder.end()] == events
