"""OpenAI Responses (`POST /v1/responses`): `instructions` and `input` items in, typed SSE events or a response object out."""

from __future__ import annotations

import zlib
from typing import Any

from gateway.apis.base import Api, ItemTrimming, latest_index
from gateway.exchange import Reply, content_texts
from gateway.memory.inject import SEPARATOR
from gateway.memory.overflow import Group, Trimming
from gateway.replies import SseCapture, decoded_json

# Failed, incomplete and cancelled responses teach nothing; an `error` event ends the stream failed.
FAILED_EVENTS = frozenset({"error", "response.failed", "response.incomplete", "response.cancelled"})


def is_user_item(item: Any) -> bool:
    return isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message"


def as_message(item: Any) -> dict[str, Any] | None:
    """One input item as a chat message: messages keep their role and text parts, tool calls and outputs
    become assistant and tool turns; other items (reasoning, references) count as a message of no text."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        return {"role": "system" if role == "developer" else role, "content": item.get("content")}
    if kind == "function_call":
        return {"role": "assistant", "content": None, "tool_calls": [{"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")}}]}
    if kind == "function_call_output":
        output = item.get("output")
        return {"role": "tool", "content": output if isinstance(output, (str, list)) else None}
    return {"role": "item", "content": None}  # not serialised to be counted: a huge reasoning item would cost the event loop


def viewed(payload: dict[str, Any]) -> list[tuple[int | None, dict[str, Any]]]:
    """The view's messages with the input item each comes from (None: the instructions, or a string input)."""
    messages: list[tuple[int | None, dict[str, Any]]] = []
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append((None, {"role": "system", "content": instructions}))
    given = payload.get("input")
    if isinstance(given, str):
        messages.append((None, {"role": "user", "content": given}))
    elif isinstance(given, list):
        messages.extend((j, m) for j, m in enumerate(map(as_message, given)) if m is not None)
    return messages


def item_groups(items: list[Any]) -> list[Group]:
    """Input items kept or dropped together: a call (`function_call`, any `*_call` with a `call_id`) with its
    `*_output` items, and a reasoning item with the item that follows it, as one contiguous run."""
    ends = list(range(len(items)))  # the last item each one must stay with
    calls: dict[str, int] = {}
    for i, item in enumerate(items):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        call_id = item.get("call_id") if isinstance(item, dict) else None
        if kind == "reasoning":
            ends[i] = min(i + 1, len(items) - 1)
        elif isinstance(kind, str) and isinstance(call_id, str):
            if not kind.endswith("_output"):
                calls.setdefault(call_id, i)
            elif (called := calls.get(call_id)) is not None:
                ends[called] = max(ends[called], i)
    groups: list[Group] = []
    start = 0
    while start < len(items):
        end, position = ends[start], start
        while position < end:  # a run grows while its members reach further
            position += 1
            end = max(end, ends[position])
        run = tuple(range(start, end + 1))
        pinned = any(isinstance(items[j], dict) and items[j].get("type", "message") == "message" and items[j].get("role") in ("system", "developer")
                     for j in run)
        groups.append(Group(run, is_user_item(items[start]), pinned))
        start = end + 1
    return groups


def reply_from_response(body: Any) -> Reply | None:
    """The answer of a completed response object: its `output_text` parts and function calls."""
    if not isinstance(body, dict) or body.get("status") != "completed" or not isinstance(body.get("output"), list):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in body["output"]:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message" and isinstance(item.get("content"), list):
            texts.extend(content_texts([p for p in item["content"] if isinstance(p, dict) and p.get("type") == "output_text"]))
        elif item.get("type") == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function", "function": {"name": item.get("name"), "arguments": item.get("arguments")}})
    return Reply("".join(texts), calls, "tool_calls" if calls and not texts else "stop")


class ResponsesCapture(SseCapture):
    """Typed events: text from `response.output_text.delta`, the answer from `response.completed`'s response."""

    def __init__(self) -> None:
        super().__init__()
        self._deltas: list[str] = []
        self._completed: Reply | None = None

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            self._deltas.append(event["delta"])
        elif kind == "response.completed":
            self.done = True
            self._completed = reply_from_response(event.get("response"))
        elif kind in FAILED_EVENTS:
            self.failed = True

    def _reply(self) -> Reply | None:
        completed = self._completed
        if completed is None:
            return Reply("".join(self._deltas))
        if not completed.content and self._deltas:  # a server that leaves the final output out
            return Reply("".join(self._deltas), completed.tool_calls, completed.finish_reason)
        return completed


class ResponsesApi(Api):
    name = "responses"

    def view(self, payload: dict[str, Any]) -> dict[str, Any]:
        view: dict[str, Any] = {"messages": [m for _, m in viewed(payload)]}
        if payload.get("tools"):
            view["tools"] = payload["tools"]
        if isinstance(payload.get("max_output_tokens"), int):
            view["max_tokens"] = payload["max_output_tokens"]
        return view

    def trimming(self, payload: dict[str, Any]) -> Trimming | None:
        if payload.get("previous_response_id") is not None or payload.get("conversation") is not None or not isinstance(payload.get("input"), list):
            return None  # the history is held server-side, or there is none
        return ItemTrimming(self, payload, "input", viewed, item_groups)

    def appends(self, payload: dict[str, Any], placement: str) -> bool:
        if placement == "tail" and self._tail_index(payload) is not None:
            return False
        instructions = payload.get("instructions")
        return isinstance(instructions, str) and bool(instructions)

    def insert(self, payload: dict[str, Any], block: str, placement: str) -> dict[str, Any] | None:
        index = self._tail_index(payload) if placement == "tail" else None
        if index is not None:
            # A developer item right before the latest user item: the caller's earlier items stay byte-identical.
            tail = {"role": "developer", "content": block.removeprefix(SEPARATOR)}
            given = payload["input"]
            items = [tail, {"role": "user", "content": given}] if isinstance(given, str) else [*given[:index], tail, *given[index:]]
            return {**payload, "input": items}
        instructions = payload.get("instructions")
        if isinstance(instructions, str) and instructions:
            return {**payload, "instructions": instructions + block}  # the caller's instructions verbatim, then the block
        if instructions is None or instructions == "":
            return {**payload, "instructions": block.removeprefix(SEPARATOR)}
        return None  # instructions of a shape we do not know: leave the request alone

    @staticmethod
    def _tail_index(payload: dict[str, Any]) -> int | None:
        given = payload.get("input")
        if isinstance(given, str):
            return 0
        return latest_index(given, is_user_item) if isinstance(given, list) else None

    def reply_from_json(self, raw: bytes, content_encoding: str) -> Reply | None:
        try:
            return reply_from_response(decoded_json(raw, content_encoding))
        except (ValueError, zlib.error):
            return None

    def stream_capture(self) -> SseCapture:
        return ResponsesCapture()
