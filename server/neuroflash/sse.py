"""Reading a chat-completions event stream: the SSE standard's framing, what the events say, and its watch.

Framing follows the WHATWG HTML standard's "server-sent events" parsing rules:
- the body is UTF-8, and one leading byte-order mark is dropped (it is not part of the first field);
- lines end with CRLF, LF or CR, also split across network chunks;
- a line starting with `:` is a comment; `field:value` drops one space after the colon if there is one, and a line
  with no colon is a field with an empty value;
- `data` lines accumulate (joined by LF); `event` sets the type; `id` and `retry` are read and kept; other fields
  are ignored;
- a blank line dispatches the event (none when no data came).

What the events say (`ChatReading`):
- an error event (`event: error`, or data that is `{"error": …}`) fails the generation, quoting the upstream,
  with the text so far and `maybe_processed` (words may be spent);
- the stream is finished by `data: [DONE]`, or by a chunk that carries both `finish_reason` and `usage`.

One deliberate difference from the standard: the standard discards an event cut off before its blank line. A last
`[DONE]`, or a last chunk with `finish_reason` and `usage`, cut off that way still counts, since all of it arrived;
any other unterminated last event is discarded. A stream that never says it finished is never reported finished.

The watch (`StreamWatch`): a generation ends when no text came for its idle time (comments and keep-alives do not
count) or after its longest time in all, whatever the upstream keeps sending.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
from pydantic import ValidationError

from server.clock import Clock
from server.errors import IncompleteStream, UpstreamStreamError, UpstreamUnavailable
from server.httpio import upstream_text
from server.neuroflash.wire import ChatChunk, ChatResult
from server.responses import request_id

BOM = "\ufeff"
DONE = "[DONE]"
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    """One dispatched event; `complete` is False for a last event the stream cut off before its blank line."""

    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None
    complete: bool = True


class EventDecoder:
    """The standard's parser, fed the body chunk by chunk; `end()` reports an event cut off at the end."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._pending = ""  # text of a line not ended yet (a trailing CR waits to see whether LF follows)
        self._data: list[str] = []
        self._type = ""
        self._last_id: str | None = None
        self._retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """The events this chunk completes."""
        return self._lines(self._text.decode(chunk))

    def end(self) -> list[Event]:
        """The stream ended: the events its last bytes complete, then the one it cut off before its blank line
        (`complete=False`), if that one had data. A last line with no line end at all is still read."""
        rest = self._pending + self._start(self._text.decode(b"", final=True))
        self._pending = ""
        *lines, last = _LINE_END.split(rest)
        events = [event for event in map(self._line, lines) if event is not None]
        if last:
            self._field(last)
        if self._data:
            events.append(self._dispatch(complete=False))
        return events

    def _start(self, text: str) -> str:
        if not self._started and text:
            self._started = True
            return text.removeprefix(BOM)
        return text

    def _lines(self, text: str) -> list[Event]:
        buffer = self._pending + self._start(text)
        events: list[Event] = []
        start = 0
        length = len(buffer)
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            end = min(i for i in (cr, lf) if i != -1)
            if end == cr and end + 1 == length:
                break  # CR as the last character: wait for the next chunk to know whether LF follows
            line = buffer[start:end]
            start = end + (2 if end == cr and buffer.startswith("\n", end + 1) else 1)
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._pending = buffer[start:]
        return events

    def _line(self, line: str) -> Event | None:
        if line:
            self._field(line)
            return None
        if self._data:
            return self._dispatch(complete=True)
        self._reset()
        return None

    def _field(self, line: str) -> None:
        if line.startswith(":"):
            return  # a comment (keep-alives are sent as comments)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry_ms = int(value)

    def _reset(self) -> None:
        self._data, self._type = [], ""

    def _dispatch(self, *, complete: bool) -> Event:
        event = Event("\n".join(self._data), self._type or "message", self._last_id, self._retry_ms, complete)
        self._reset()
        return event


TextSink = Callable[[str], Awaitable[None]]


class ChatReading:
    """What the events of one chat stream have said so far: the text, the model, the finish and the words."""

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id
        self.parts: list[str] = []
        self.model = ""
        self.finish = ""
        self.words = 0
        self.finished = False  # [DONE] came, or a chunk with finish_reason and usage

    def take(self, event: Event) -> list[str]:
        """The text this event adds. An unterminated last event only counts when it finishes the stream.

        Raises:
            UpstreamStreamError: the event is an error event; it quotes the upstream, with the text so far.
            UpstreamUnavailable: a data event that is not a chat chunk (words may be spent).
        """
        data = event.data.strip()
        if data == DONE:
            self.finished = True
            return []
        if not data and event.event != "error":
            return []  # an empty data event: a keep-alive by another name
        body = _json(data)
        if event.event == "error" or (isinstance(body, dict) and body.get("error")):
            raise self._failed(event, body)
        try:
            chunk = ChatChunk.model_validate(body)
        except ValidationError:
            if not event.complete:
                return []  # a cut-off last event that is not JSON yet: discarded, as the standard says
            raise UpstreamUnavailable(
                "neuroflash sent a malformed stream event.", request_id=self.request_id, maybe_processed=True
            ) from None
        ends = chunk.usage is not None and any(c.finish_reason for c in chunk.choices)
        if not event.complete and not ends:
            return []  # cut off mid-event: discarded, as the standard says
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.words = chunk.usage.words_used
        texts: list[str] = []
        for choice in chunk.choices:
            self.finish = choice.finish_reason or self.finish
            if choice.delta.content:
                texts.append(choice.delta.content)
        self.parts.extend(texts)
        self.finished = self.finished or ends
        return texts

    def result(self) -> ChatResult:
        """The finished generation.

        Raises:
            IncompleteStream: the stream never said it finished; words may be spent, the text so far goes with it.
        """
        if not self.finished:
            raise self.cut(
                "The generation stream ended before [DONE] or a final chunk with its usage: the text is incomplete."
            )
        return ChatResult(
            text="".join(self.parts),
            model=self.model,
            finish_reason=self.finish or "stop",
            words_used=self.words,
            request_id=self.request_id,
        )

    def cut(self, message: str) -> IncompleteStream:
        """A stream that ended early: the words may be spent, so it is never repeated; the text so far goes with it."""
        return IncompleteStream(
            message, request_id=self.request_id, maybe_processed=True, details={"partial_text": "".join(self.parts)}
        )

    def _failed(self, event: Event, body: Any) -> UpstreamStreamError:
        said = _error_words(body) or upstream_text(event.data, 300) or "no message"
        return UpstreamStreamError(
            f"neuroflash reported an error in the middle of the generation, saying: «{said}». "
            "The text written before it is in partial_text.",
            request_id=self.request_id,
            maybe_processed=True,
            details={"partial_text": "".join(self.parts), "upstream_error": said},
        )


async def read_chat(body: AsyncIterable[bytes], reading: ChatReading, on_text: TextSink) -> ChatResult:
    """Read a chat stream to its end, handing each piece of text to `on_text` as it arrives.

    Raises:
        UpstreamStreamError: an error event came (with the text so far and `maybe_processed`).
        IncompleteStream: the stream ended without saying it had finished.
        UpstreamUnavailable: an event that is not a chat chunk.
    """
    decoder = EventDecoder()
    async for chunk in body:
        for event in decoder.feed(chunk):
            for text in reading.take(event):
                await on_text(text)
            if reading.finished and event.data.strip() == DONE:
                return reading.result()
    for event in decoder.end():
        for text in reading.take(event):
            await on_text(text)
    return reading.result()


# --- the watch on one generation: its idle time and its longest time --------------------------------------


class GenerationDeadline(httpx2.ReadTimeout):
    """A stream that sent no text for the idle timeout (keep-alive comments do not count), or ran too long."""


class StreamWatch:
    """The two clocks of one generation: time since the last text, and time since the start."""

    def __init__(self, clock: Clock, idle_s: float, max_s: float) -> None:
        self._clock = clock
        self.idle_s, self.max_s = idle_s, max_s
        self.started = self.last_data = clock.now()

    def data(self) -> None:
        self.last_data = self._clock.now()

    def check(self) -> None:
        """Stop a stream that ran past its deadline, or went quiet for too long.

        Raises:
            GenerationDeadline: the whole stream took longer than `max_s`, or no text came for `idle_s`.
        """
        now = self._clock.now()
        if now - self.started > self.max_s:
            raise GenerationDeadline(f"the generation ran longer than {self.max_s:.0f} s")
        if now - self.last_data > self.idle_s:
            raise GenerationDeadline(f"no text arrived for {self.idle_s:.0f} s, only keep-alives")


class WatchedStream(httpx2.AsyncByteStream):
    """The body of a generation stream, checked against its watch at each chunk, keep-alive comments included."""

    def __init__(self, inner: httpx2.AsyncByteStream, watch: StreamWatch) -> None:
        self._inner, self._watch = inner, watch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._watch.check()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def read_response(response: httpx2.Response, on_text: TextSink, watch: StreamWatch) -> ChatResult:
    """A generation's answer read to its end (`read_chat`), its text relayed as it comes, under its watch.

    Raises:
        UpstreamStreamError: an error event came in the stream.
        IncompleteStream: the stream ended, broke or ran out of time before it said it had finished.
        UpstreamUnavailable: the answer is not an event stream, or holds an event that is not a chat chunk.
    """
    rid = request_id(response)
    if not response.headers.get("content-type", "").lower().startswith("text/event-stream"):
        raise UpstreamUnavailable(
            "neuroflash answered the generation with something other than an event stream.",
            request_id=rid,
            maybe_processed=True,
        )
    reading = ChatReading(rid)

    async def relay(text: str) -> None:
        watch.data()
        await on_text(text)

    try:
        return await read_chat(response.aiter_bytes(), reading, relay)
    except GenerationDeadline as exc:
        if reading.finished:
            return reading.result()  # all of it came; only the closing [DONE] did not
        raise reading.cut(
            f"The generation was stopped: {exc} (FLASHSNAP_TIMEOUT_S, FLASHSNAP_MAX_GENERATION_S)."
        ) from None
    except httpx2.TransportError as exc:
        if reading.finished:
            return reading.result()
        raise reading.cut(f"The generation stream broke ({type(exc).__name__}) before it finished.") from None


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _error_words(body: Any) -> str:
    """The upstream's words in an error event: `{"error": "…"}`, `{"error": {"message", "code"}}` or `{"message"}`."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error", body)
    if isinstance(error, str):
        return upstream_text(error, 300)
    if isinstance(error, dict):
        message, code = error.get("message"), error.get("code") or error.get("type")
        words = upstream_text(message, 300) if isinstance(message, str) else ""
        if isinstance(code, str) and code:
            words = f"{words} ({upstream_text(code, 64)})" if words else upstream_text(code, 64)
        return words
    return ""
