"""Assemble the assistant's reply from a chat completion, streamed (SSE deltas) or not (JSON)."""

from __future__ import annotations

import json
import zlib
from typing import Any

from gateway.exchange import Reply, content_texts


class SseCapture:
    """Fed the raw SSE bytes as they pass through; never alters or holds them back, and never raises.

    Subclasses read each complete line (`_line`) and say when the stream is `done` (its closing event
    came) or `failed` (an error event, unreadable JSON): a truncated or failed stream is not extracted
    from. Any error while reading it (an event shape nobody anticipated) stops the capture for good
    and is kept in `error`: the bytes flow on.
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the current line's pieces: joined once, when its newline comes
        self.done = False
        self.failed = False
        self.error: Exception | None = None

    def feed(self, chunk: bytes) -> None:
        if self.error is not None:
            return
        try:
            self._feed(chunk)
        except Exception as exc:  # a capture bug or an odd event must never cut the client's stream
            self.error = exc

    def _feed(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            self._pending.append(chunk)  # no line end yet: linear in the line's length, however long
            return
        self._pending.append(lines[0])
        first = b"".join(self._pending)
        self._pending = [lines[-1]] if lines[-1] else []
        for line in [first, *lines[1:-1]]:
            self._line(line.rstrip(b"\r"))

    def _line(self, line: bytes) -> None:
        value = data_of(line)
        if value is None:
            return
        try:
            event = json.loads(value)
        except ValueError:
            self.failed = True  # malformed SSE: do not learn from what we could not read
            return
        if not isinstance(event, dict):
            self.failed = True
            return
        self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def _reply(self) -> Reply | None:
        raise NotImplementedError

    def reply(self) -> Reply | None:
        """The assembled reply, or None when the stream was truncated, failed or could not be read."""
        if any(piece.strip() for piece in self._pending):
            self.feed(b"\n")
        if not self.done or self.failed or self.error is not None:
            return None
        return self._reply()


def data_of(line: bytes) -> bytes | None:
    """The value of an SSE `data:` line, else None (`event:`, comments, blank lines)."""
    return line[5:].strip() if line.startswith(b"data:") else None


class StreamCapture(SseCapture):
    """A chat completion stream: content and tool-call deltas of the first choice, complete at `data: [DONE]`."""

    def __init__(self) -> None:
        super().__init__()
        self._content: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def _line(self, line: bytes) -> None:
        if data_of(line) == b"[DONE]":
            self.done = True
            return
        super()._line(line)

    def _event(self, event: dict[str, Any]) -> None:
        if "error" in event:
            self.failed = True
            return
        choices = event.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        if isinstance(delta.get("content"), str):
            self._content.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            slot = self._tools.setdefault(int(call.get("index", 0)), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""

    def _reply(self) -> Reply:
        tools = [self._tools[i] for i in sorted(self._tools)]
        return Reply("".join(self._content), tools, self.finish_reason)


def decoded_json(raw: bytes, content_encoding: str = "") -> Any:
    """The JSON of a response body, gunzipped or inflated first when the upstream encoded it."""
    if content_encoding.strip().lower() in ("gzip", "deflate"):  # header values are case-insensitive
        raw = zlib.decompress(raw, wbits=47)
    return json.loads(raw)


def reply_from_json(raw: bytes, content_encoding: str = "") -> Reply | None:
    """The first choice's message of a JSON chat completion, or None if it is not one."""
    try:
        body = decoded_json(raw, content_encoding)
        message = body["choices"][0]["message"]
        content = "".join(content_texts(message.get("content")))  # some servers answer in parts
        return Reply(content, list(message.get("tool_calls") or []), body["choices"][0].get("finish_reason"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, zlib.error):
        return None
