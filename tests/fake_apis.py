"""The Responses and Messages halves of the fake upstream: what OpenAI's `/v1/responses` and Anthropic's
`/v1/messages` answer, in JSON and as typed SSE events (`event:` lines, sequence numbers, error shapes).

The request's `model` picks the behaviour, as for chat completions:

  anything          an echo of the latest user input ("echo: ...") or of an X-Fake-Reply header
  fake-tools        a function call (Responses) or a tool_use block (Messages)
  fake-error-NNN    status NNN with the API's own error body
  fake-failed       Responses: `response.failed` (stream) / status "failed"; Messages: an `error` event mid-stream
  fake-incomplete   Responses: `response.incomplete` / status "incomplete"
  fake-reset        streams a few events, then drops the connection

Responses keeps what it answered, for retrieve, delete, cancel and input_items; `background: true`
answers status "queued" at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

def fake_id(prefix: str, *parts: Any) -> str:
    """Ids derived from the request: the same request gets the same bytes back, so a test can compare streams."""
    return prefix + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [""]


# -- OpenAI Responses --------------------------------------------------------------------------------


def input_text(given: Any) -> str:
    """The text of the latest user item of a Responses `input`."""
    if isinstance(given, str):
        return given
    for item in reversed(given if isinstance(given, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "input_text")
    return ""


def response_object(req: dict[str, Any], status: str, output: list[dict[str, Any]], rid: str | None = None) -> dict[str, Any]:
    return {
        "id": rid or fake_id("resp_", req, status), "object": "response", "created_at": 1700000000, "status": status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.get("instructions"), "max_output_tokens": req.get("max_output_tokens"), "model": req.get("model", ""),
        "output": output, "parallel_tool_calls": True, "previous_response_id": req.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
        "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": req.get("tools") or [], "top_p": 1.0,
        "truncation": "disabled", "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                                            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10},
        "user": req.get("user"), "metadata": req.get("metadata") or {}, "background": bool(req.get("background")),
    }


def message_item(text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": "msg_fake", "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def function_item(arguments: str = '{"city": "Paris"}', status: str = "completed") -> dict[str, Any]:
    return {"id": "fc_fake", "type": "function_call", "status": status, "call_id": "call_1", "name": "get_weather", "arguments": arguments}


def responses_output(model: str, text: str) -> list[dict[str, Any]]:
    return [function_item()] if model == "fake-tools" else [message_item(text)]


def responses_events(req: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The typed events of one streamed response, numbered as the real API numbers them."""
    model = str(req.get("model", ""))
    rid = fake_id("resp_", req, "stream")
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response_object(req, "in_progress", [], rid)},
        {"type": "response.in_progress", "response": response_object(req, "in_progress", [], rid)},
    ]
    if model == "fake-tools":
        events += [
            {"type": "response.output_item.added", "output_index": 0, "item": function_item("", "in_progress")},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_fake", "output_index": 0, "delta": '{"city": '},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_fake", "output_index": 0, "delta": '"Paris"}'},
            {"type": "response.function_call_arguments.done", "item_id": "fc_fake", "output_index": 0, "arguments": '{"city": "Paris"}'},
            {"type": "response.output_item.done", "output_index": 0, "item": function_item()},
        ]
    else:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events += [
            {"type": "response.output_item.added", "output_index": 0, "item": {**message_item("", "in_progress"), "content": []}},
            {"type": "response.content_part.added", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "part": part},
            *({"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": w, "logprobs": []} for w in words(text)),
            {"type": "response.output_text.done", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
            {"type": "response.content_part.done", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "part": {**part, "text": text}},
            {"type": "response.output_item.done", "output_index": 0, "item": message_item(text)},
        ]
    output = responses_output(model, text)
    if model == "fake-failed":
        failed = response_object(req, "failed", [], rid)
        failed["error"] = {"code": "server_error", "message": "The model failed to generate a response."}
        events.append({"type": "response.failed", "response": failed})
    elif model == "fake-incomplete":
        events.append({"type": "response.incomplete", "response": response_object(req, "incomplete", output, rid)})
    else:
        events.append({"type": "response.completed", "response": response_object(req, "completed", output, rid)})
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def responses_error(status: int) -> dict[str, Any]:
    return {"error": {"message": f"fake {status}", "type": "server_error" if status >= 500 else "invalid_request_error", "param": None, "code": f"fake_{status}"}}


class FakeResponses:
    """The stored side of the Responses API: create, retrieve, delete, cancel, input_items."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # id -> (request, response)

    def create(self, req: dict[str, Any], text: str) -> tuple[int, dict[str, Any]]:
        model = str(req.get("model", ""))
        if model.startswith("fake-error-"):
            status = int(model.rsplit("-", 1)[1])
            return status, responses_error(status)
        if req.get("background"):
            body = response_object(req, "queued", [])
        elif model == "fake-failed":
            body = response_object(req, "failed", [])
            body["error"] = {"code": "server_error", "message": "The model failed to generate a response."}
        else:
            body = response_object(req, "incomplete" if model == "fake-incomplete" else "completed", responses_output(model, text))
        self.stored[body["id"]] = (req, body)
        return 200, body

    def keep(self, req: dict[str, Any], events: list[dict[str, Any]]) -> None:
        final = events[-1]["response"]
        self.stored[final["id"]] = (req, final)

    def other(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """GET /v1/responses/{id}, DELETE it, POST .../cancel, GET .../input_items."""
        parts = path.split("?", 1)[0].split("/")[3:]  # after /v1/responses
        if not parts or parts[0] not in self.stored:
            return 404, {"error": {"message": "No response found", "type": "invalid_request_error", "param": None, "code": None}}
        req, body = self.stored[parts[0]]
        if len(parts) == 1 and method == "GET":
            return 200, body
        if len(parts) == 1 and method == "DELETE":
            del self.stored[parts[0]]
            return 200, {"id": parts[0], "object": "response.deleted", "deleted": True}
        if parts[1:] == ["cancel"] and method == "POST":
            body = {**body, "status": "cancelled"}
            self.stored[parts[0]] = (req, body)
            return 200, body
        if parts[1:] == ["input_items"] and method == "GET":
            given = req.get("input")
            items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": given}]}] if isinstance(given, str) else list(given or [])
            items = [{"id": f"msg_in_{i}", **item} for i, item in enumerate(items)]
            return 200, {"object": "list", "data": items[::-1], "first_id": "x", "last_id": "y", "has_more": False}
        return 404, {"error": {"message": "unknown route", "type": "invalid_request_error", "param": None, "code": None}}


# -- Anthropic Messages --------------------------------------------------------------------------------


def messages_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            texts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
            if texts:
                return texts[-1]  # the user's own words come last (a memory block may lead the turn)
    return ""


def anthropic_error(status: int, kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def message_body(model: str, text: str) -> dict[str, Any]:
    tools = model == "fake-tools"
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if tools:
        content = [{"type": "text", "text": "Let me look that up."},
                   {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
    return {"id": fake_id("msg_", model, text), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 5}}


def messages_events(model: str, text: str) -> list[dict[str, Any]]:
    start = {**message_body(model, ""), "content": [], "stop_reason": None}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    if model == "fake-tools":
        events += [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look that up."}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
            {"type": "content_block_stop", "index": 1},
        ]
    else:
        events += [{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, {"type": "ping"}]
        events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in words(text)]
        events.append({"type": "content_block_stop", "index": 0})
    if model == "fake-failed":
        return events[:3] + [anthropic_error(529, "overloaded_error", "Overloaded")]
    events += [{"type": "message_delta", "delta": {"stop_reason": "tool_use" if model == "fake-tools" else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5}}, {"type": "message_stop"}]
    return events


def messages_refusal(headers: dict[str, str], model: str) -> tuple[int, dict[str, Any]] | None:
    """What the real API refuses before answering: no key, no version header, an error model."""
    if not headers.get("x-api-key") and not headers.get("authorization", "").startswith("Bearer "):  # newer SDKs send a Bearer token
        return 401, anthropic_error(401, "authentication_error", "x-api-key header is required")
    if not headers.get("anthropic-version"):
        return 400, anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
    if model.startswith("fake-error-"):
        status = int(model.rsplit("-", 1)[1])
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return status, anthropic_error(status, kind, f"fake {status}")
    return None
