"""The per-API adapters: the chat-shaped view recall and extraction read, and where each placement puts the block."""

from __future__ import annotations

import json

from gateway.apis.chat import ChatApi
from gateway.errors import BadRequest, ClientBodyTimeout, UpstreamTimeout, UpstreamUnreachable
from gateway.apis.messages import MessagesApi, MessagesCapture, reply_from_message
from gateway.apis.responses import ResponsesApi, ResponsesCapture
from gateway.memory.inject import SEPARATOR
from gateway.memory.recall import query_text

BLOCK = "<memgate-memories>\n- fact\n</memgate-memories>"


def test_chat_tail_puts_a_system_message_right_before_the_latest_user_turn() -> None:
    payload = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
                            {"role": "user", "content": "u2"}, {"role": "tool", "content": "t"}]}
    api = ChatApi()
    assert not api.appends(payload, "tail") and api.appends(payload, "system")
    out = api.insert(payload, BLOCK, "tail")
    assert out["messages"][:3] == payload["messages"][:3]
    assert out["messages"][3] == {"role": "system", "content": BLOCK} and out["messages"][4:] == payload["messages"][3:]
    assert api.insert(payload, SEPARATOR + BLOCK, "system")["messages"][0]["content"] == "S" + SEPARATOR + BLOCK


def test_responses_view_reads_input_items_and_tail_adds_a_developer_item() -> None:
    payload = {"instructions": "Be brief.", "max_output_tokens": 50, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Which tea do I like?"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "I prefer coffee"},
        {"type": "reasoning", "summary": []}]}
    api = ResponsesApi()
    view = api.view(payload)
    assert [m["role"] for m in view["messages"]] == ["system", "user", "assistant", "tool", "item"]
    assert query_text(view) == "Which tea do I like?" and view["max_tokens"] == 50
    out = api.insert(payload, BLOCK, "tail")
    assert out["input"][0] == {"role": "developer", "content": BLOCK} and out["input"][1:] == payload["input"]
    assert out["instructions"] == "Be brief."
    assert api.insert({"input": "hi"}, BLOCK, "tail")["input"] == [{"role": "developer", "content": BLOCK}, {"role": "user", "content": "hi"}]
    assert api.insert({"input": "hi"}, BLOCK, "system") == {"input": "hi", "instructions": BLOCK}
    assert api.insert(payload, SEPARATOR + BLOCK, "system")["instructions"] == "Be brief." + SEPARATOR + BLOCK
    assert api.insert({"input": "hi", "instructions": 7}, BLOCK, "system") is None


def test_responses_stream_capture_needs_completed_and_ignores_failed_ones() -> None:
    def run(events: list[dict]) -> object:
        capture = ResponsesCapture()
        for event in events:
            capture.feed(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        return capture.reply()

    deltas = [{"type": "response.output_text.delta", "delta": "he"}, {"type": "response.output_text.delta", "delta": "llo"}]
    completed = {"type": "response.completed", "response": {"status": "completed", "output": [
        {"type": "message", "content": [{"type": "output_text", "text": "hello"}]}]}}
    assert run([*deltas, completed]).content == "hello"
    assert run(deltas) is None
    assert run([*deltas, {"type": "response.failed", "response": {"status": "failed"}}]) is None
    assert run([*deltas, {"type": "error", "message": "boom"}, completed]) is None


def test_messages_view_keeps_tool_results_out_of_the_users_words_and_tail_leads_the_user_turn() -> None:
    payload = {"system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}], "max_tokens": 9, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "I prefer rain"}, {"type": "text", "text": "thanks"}]}]}
    api = MessagesApi()
    view = api.view(payload)
    assert [m["role"] for m in view["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert query_text(view).endswith("thanks") and "rain" not in query_text(view)
    out = api.insert(payload, BLOCK, "tail")
    assert out["messages"][:2] == payload["messages"][:2] and out["system"] == payload["system"]
    assert [b["type"] for b in out["messages"][2]["content"]] == ["tool_result", "text", "text"]
    assert out["messages"][2]["content"][1] == {"type": "text", "text": BLOCK}
    system = api.insert(payload, BLOCK, "system")["system"]
    assert system[0] == payload["system"][0] and system[1] == {"type": "text", "text": BLOCK}
    assert api.identity_fields({"metadata": {"user_id": "u1"}, "user": "x"}) == {"user": "u1"}


def test_messages_capture_and_json_reply_read_text_and_tool_use() -> None:
    capture = MessagesCapture()
    for event in ({"type": "message_start", "message": {}}, {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi "}},
                  {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "w"}},
                  {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
                  {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}, {"type": "message_stop"}):
        capture.feed(b"data: " + json.dumps(event).encode() + b"\n\n")
    reply = capture.reply()
    assert reply.content == "hi " and reply.tool_calls[0]["function"] == {"name": "w", "arguments": "{}"} and reply.finish_reason == "tool_use"
    assert reply_from_message({"type": "error", "error": {}}) is None
    assert reply_from_message({"type": "message", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}).content == "ab"


def test_messages_errors_are_anthropic_shaped_with_the_gateways_status() -> None:
    for exc, status, kind in ((BadRequest("bad"), 400, "invalid_request_error"), (UpstreamUnreachable("down"), 502, "api_error"),
                              (UpstreamTimeout("slow"), 504, "timeout_error"), (ClientBodyTimeout("stalled"), 408, "timeout_error")):
        response = MessagesApi().error(exc, {"X-Memory-Request-Id": "r1"})
        assert response.status_code == status and json.loads(response.body) == {"type": "error", "error": {"type": kind, "message": exc.message}}
        assert response.headers["X-Memory-Request-Id"] == "r1"
    assert MessagesApi().error(ClientBodyTimeout("stalled"), {}).headers["connection"] == "close"
