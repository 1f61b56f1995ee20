"""Anthropic Messages (`POST /v1/messages`): top-level `system`, content blocks, typed SSE events, Anthropic's error shape."""

from __future__ import annotations

import json
import zlib
from typing import Any, Mapping

from starlette.responses import JSONResponse, Response

from gateway.apis.base import Api, ItemTrimming, latest_index
from gateway.config import Settings
from gateway.errors import ClientBodyTimeout, GatewayError
from gateway.exchange import Reply
from gateway.memory.inject import SEPARATOR
from gateway.memory.overflow import Group, Trimming
from gateway.replies import SseCapture, decoded_json

# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error"}


def anthropic_base(settings: Settings) -> str:
    """The Messages upstream as a base ending in /v1; 'upstream' is the main upstream (vLLM, LiteLLM... speak both)."""
    if settings.anthropic_upstream_url.strip() == "upstream":
        return settings.upstream_base
    base = settings.anthropic_upstream_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def is_user_message(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "user"


def as_messages(message: Any) -> list[dict[str, Any]]:
    """One Messages turn as chat messages: text blocks stay parts, `tool_use` becomes tool calls, and
    `tool_result` blocks (which Anthropic sends in a user turn) become tool turns, not the user's words."""
    if not isinstance(message, dict):
        return []
    role, content = message.get("role"), message.get("content")
    if not isinstance(content, list):
        return [{"role": role, "content": content}]
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text")})
        elif kind == "image":
            parts.append({"type": "image_url"})  # counted as an image toward the budget
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input"), ensure_ascii=False)}})
        elif kind == "tool_result":
            results.append({"role": "tool", "content": block.get("content")})
    out = [*results, {"role": role, "content": parts}]
    if calls:
        out[-1]["tool_calls"] = calls
    return out


def viewed(payload: dict[str, Any]) -> list[tuple[int | None, dict[str, Any]]]:
    """The view's messages with the turn each comes from (None: the system text)."""
    messages: list[tuple[int | None, dict[str, Any]]] = []
    system = payload.get("system")
    if isinstance(system, (str, list)) and system:
        messages.append((None, {"role": "system", "content": system}))
    given = payload.get("messages")
    for j, message in enumerate(given if isinstance(given, list) else ()):
        messages.extend((j, m) for m in as_messages(message))
    return messages


def _has_block(message: Any, role: str, kind: str) -> bool:
    content = message.get("content") if isinstance(message, dict) and message.get("role") == role else None
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == kind for b in content)


def turn_groups(messages: list[Any]) -> list[Group]:
    """Turns kept or dropped together: an assistant turn using tools with the next user turn holding their
    results. A group opens a turn when it is a user turn of the user's own (no tool results): a kept history
    starts there, so the request still starts with a user turn and roles still alternate."""
    groups: list[Group] = []
    called = False  # the previous turn is the assistant's and uses tools
    for j, message in enumerate(messages):
        answers = _has_block(message, "user", "tool_result")
        if answers and called:
            groups[-1] = Group((*groups[-1].items, j), groups[-1].opens_turn)
        else:
            groups.append(Group((j,), is_user_message(message) and not answers))
        called = _has_block(message, "assistant", "tool_use")
    return groups


def reply_from_message(body: Any) -> Reply | None:
    """The answer of a JSON message: its text blocks and tool uses."""
    if not isinstance(body, dict) or body.get("type") != "message" or not isinstance(body.get("content"), list):
        return None
    texts = [b["text"] for b in body["content"] if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
    calls = [{"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input"), ensure_ascii=False)}}
             for b in body["content"] if isinstance(b, dict) and b.get("type") == "tool_use"]
    stop = body.get("stop_reason")
    return Reply("".join(texts), calls, stop if isinstance(stop, str) else None)


class MessagesCapture(SseCapture):
    """Typed events: text from `content_block_delta` (`text_delta`), tool input from `input_json_delta`, complete at `message_stop`."""

    def __init__(self) -> None:
        super().__init__()
        self._texts: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self._stop: str | None = None

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                self._texts.append(delta["text"])
            elif delta.get("type") == "input_json_delta" and int(event.get("index", 0)) in self._tools:
                self._tools[int(event.get("index", 0))]["function"]["arguments"] += str(delta.get("partial_json") or "")
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._tools[int(event.get("index", 0))] = {"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": ""}}
        elif kind == "message_delta":
            stop = (event.get("delta") or {}).get("stop_reason")
            self._stop = stop if isinstance(stop, str) else self._stop
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.failed = True

    def _reply(self) -> Reply:
        return Reply("".join(self._texts), [self._tools[i] for i in sorted(self._tools)], self._stop)


class MessagesApi(Api):
    name = "messages"
    lends_key = False  # an Anthropic key is not for the main upstream the `llm` extractor calls

    def identity_fields(self, payload: dict[str, Any]) -> Mapping[str, Any]:
        metadata = payload.get("metadata")
        return {"user": metadata.get("user_id")} if isinstance(metadata, dict) else {}

    def view(self, payload: dict[str, Any]) -> dict[str, Any]:
        view: dict[str, Any] = {"messages": [m for _, m in viewed(payload)]}
        if payload.get("tools"):
            view["tools"] = payload["tools"]
        if isinstance(payload.get("max_tokens"), int):
            view["max_tokens"] = payload["max_tokens"]
        return view

    def trimming(self, payload: dict[str, Any]) -> Trimming | None:
        if not isinstance(payload.get("messages"), list):
            return None
        return ItemTrimming(self, payload, "messages", viewed, turn_groups)

    def appends(self, payload: dict[str, Any], placement: str) -> bool:
        if placement == "tail" and self._tail_index(payload) is not None:
            return False
        system = payload.get("system")
        return isinstance(system, str) and bool(system)

    def insert(self, payload: dict[str, Any], block: str, placement: str) -> dict[str, Any] | None:
        text = {"type": "text", "text": block.removeprefix(SEPARATOR)}
        index = self._tail_index(payload) if placement == "tail" else None
        if index is not None:
            messages = list(payload["messages"])
            message = dict(messages[index])
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = [text, {"type": "text", "text": content}]
            else:
                # Tool results must lead their user turn: the block goes right after them, before the user's own text.
                at = next((i for i, b in enumerate(content) if not (isinstance(b, dict) and b.get("type") == "tool_result")), len(content))
                message["content"] = [*content[:at], text, *content[at:]]
            messages[index] = message
            return {**payload, "messages": messages}
        system = payload.get("system")
        if isinstance(system, str) and system:
            return {**payload, "system": system + block}
        if isinstance(system, list) and system:
            return {**payload, "system": [*system, text]}  # after every block, those with cache_control untouched
        if system is None or system == "" or system == []:
            return {**payload, "system": text["text"]}
        return None

    @staticmethod
    def _tail_index(payload: dict[str, Any]) -> int | None:
        messages = payload.get("messages")
        if not isinstance(messages, list):
            return None
        index = latest_index(messages, is_user_message)
        return index if index is not None and isinstance(messages[index].get("content"), (str, list)) else None

    def reply_from_json(self, raw: bytes, content_encoding: str) -> Reply | None:
        try:
            return reply_from_message(decoded_json(raw, content_encoding))
        except (ValueError, zlib.error):
            return None

    def stream_capture(self) -> SseCapture:
        return MessagesCapture()

    def error(self, exc: GatewayError, headers: dict[str, str]) -> Response:
        kind = ERROR_TYPES.get(exc.status, "api_error")
        if isinstance(exc, ClientBodyTimeout):
            headers = {**headers, "Connection": "close"}  # as ClientBodyTimeout.response: the rest of the body is not a next request
        return JSONResponse({"type": "error", "error": {"type": kind, "message": exc.message}}, status_code=exc.status, headers=headers)
