"""replies.py: the assistant's reply assembled from SSE deltas (StreamCapture) or a JSON body."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.exchange import Reply
from gateway.replies import StreamCapture, reply_from_json


def event(delta: dict[str, Any] | None = None, finish: str | None = None, index: int = 0) -> bytes:
    choice: dict[str, Any] = {"index": index, "delta": delta or {}}
    if finish:
        choice["finish_reason"] = finish
    return b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [choice]}, ensure_ascii=False).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def stream(*parts: str, finish: str = "stop") -> bytes:
    return event({"role": "assistant"}) + b"".join(event({"content": p}) for p in parts) + event(finish=finish) + DONE


def captured(raw: bytes, chunks: list[int] | None = None) -> Reply | None:
    """Feed `raw` cut at the given offsets (all at once when None)."""
    capture = StreamCapture()
    cuts = [0, *(chunks or []), len(raw)]
    for start, end in zip(cuts, cuts[1:]):
        capture.feed(raw[start:end])
    return capture.reply()


def test_a_complete_stream_gives_the_joined_content_and_finish_reason() -> None:
    assert captured(stream("Hel", "lo", " world")) == Reply("Hello world", [], "stop")


def test_every_single_split_point_gives_the_same_reply() -> None:
    raw = stream("Grüße ", "🌍", " and \"quotes\"\n")
    whole = captured(raw)
    assert whole == Reply("Grüße 🌍 and \"quotes\"\n", [], "stop")
    for cut in range(1, len(raw)):
        assert captured(raw, [cut]) == whole, cut


def test_byte_by_byte_feeding_gives_the_same_reply() -> None:
    raw = stream("naïve ", "日本語", " text")
    assert captured(raw, list(range(1, len(raw)))) == captured(raw)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=8), st.data())
def test_the_reply_does_not_depend_on_the_chunking(parts: list[str], data: st.DataObject) -> None:
    raw = stream(*parts)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=20))))
    assert captured(raw, cuts) == Reply("".join(parts), [], "stop")


def test_crlf_line_endings_are_read_like_lf() -> None:
    assert captured(stream("a", "b").replace(b"\n", b"\r\n")) == Reply("ab", [], "stop")


def test_data_without_a_space_after_the_colon_is_read() -> None:
    raw = b'data:{"choices":[{"delta":{"content":"x"}}]}\n\ndata:[DONE]\n\n'
    assert captured(raw) == Reply("x", [], None)


def test_a_final_done_without_a_newline_still_completes_the_stream() -> None:
    assert captured(stream("hi")[:-2]) == Reply("hi", [], "stop")


def test_a_stream_without_done_is_truncated_and_gives_nothing() -> None:
    assert captured(stream("hi").removesuffix(DONE)) is None


def test_an_empty_stream_gives_nothing() -> None:
    assert captured(b"") is None


def test_comments_event_names_and_blank_lines_are_ignored() -> None:
    raw = b": keep-alive\n\nevent: message\nid: 7\nretry: 10\n" + stream("ok")
    assert captured(raw) == Reply("ok", [], "stop")


def test_a_malformed_data_line_fails_the_capture() -> None:
    raw = event({"content": "a"}) + b"data: {not json\n\n" + DONE
    assert captured(raw) is None


def test_an_error_event_fails_the_capture() -> None:
    raw = event({"content": "a"}) + b'data: {"error": {"message": "overloaded"}}\n\n' + DONE
    assert captured(raw) is None


def test_a_non_object_event_fails_the_capture() -> None:
    assert captured(b"data: [1, 2]\n\n" + DONE) is None


def test_only_the_first_choice_is_captured() -> None:
    raw = event({"content": "first"}, index=0) + event({"content": "second"}, index=1) + DONE
    assert captured(raw) == Reply("first", [], None)


def test_events_without_choices_are_skipped() -> None:
    raw = b'data: {"usage": {"total_tokens": 3}}\n\n' + stream("ok")
    assert captured(raw) == Reply("ok", [], "stop")


def test_tool_call_deltas_are_assembled_per_index_in_index_order() -> None:
    raw = (
        event({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "second", "arguments": ""}}]})
        + event({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "first", "arguments": '{"q":'}}]})
        + event({"tool_calls": [{"index": 0, "function": {"arguments": ' "x"}'}}]})
        + event({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]})
        + event(finish="tool_calls")
        + DONE
    )
    reply = captured(raw)
    assert reply is not None
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == [
        {"id": "call_a", "type": "function", "function": {"name": "first", "arguments": '{"q": "x"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "second", "arguments": "{}"}},
    ]


def test_tool_call_deltas_split_at_every_byte_give_the_same_calls() -> None:
    raw = event({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"city": "Zürich"}'}}]}) + DONE
    whole = captured(raw)
    assert whole is not None and whole.tool_calls[0]["function"]["arguments"] == '{"city": "Zürich"}'
    for cut in range(1, len(raw)):
        assert captured(raw, [cut]) == whole


@pytest.mark.parametrize("delta", [
    {"tool_calls": [{"index": None, "function": {"name": "f"}}]},
    {"tool_calls": [{"index": "first", "function": {"name": "f"}}]},
    {"tool_calls": [{"index": 0, "function": "f"}]},
    {"tool_calls": [{"index": 0, "function": {"name": 5}}]},
    {"tool_calls": 5},
], ids=["index-null", "index-text", "function-string", "name-number", "tool_calls-number"])
def test_a_malformed_tool_call_delta_never_raises_out_of_feed(delta: dict[str, Any]) -> None:
    capture = StreamCapture()
    capture.feed(event(delta) + DONE)
    capture.reply()


# -- reply_from_json ------------------------------------------------------------------------------

BODY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}]}


def test_a_json_completion_gives_its_first_choices_message() -> None:
    assert reply_from_json(json.dumps(BODY).encode()) == Reply("Hi there", [], "stop")


def test_a_gzip_encoded_body_is_decoded() -> None:
    assert reply_from_json(gzip.compress(json.dumps(BODY).encode()), "gzip") == Reply("Hi there", [], "stop")


def test_a_deflate_encoded_body_is_decoded() -> None:
    assert reply_from_json(zlib.compress(json.dumps(BODY).encode()), "deflate") == Reply("Hi there", [], "stop")


@pytest.mark.parametrize("header", ["GZIP", "Gzip", " gzip "])
def test_the_content_encoding_is_matched_case_insensitively(header: str) -> None:
    assert reply_from_json(gzip.compress(json.dumps(BODY).encode()), header) == Reply("Hi there", [], "stop")


def test_a_gzip_body_without_the_header_is_unreadable() -> None:
    assert reply_from_json(gzip.compress(json.dumps(BODY).encode())) is None


def test_content_parts_are_joined() -> None:
    body = {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, "junk"]}}]}
    assert reply_from_json(json.dumps(body).encode()) == Reply("ab", [], None)


def test_tool_calls_and_null_content_are_kept() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = {"choices": [{"message": {"content": None, "tool_calls": [call]}, "finish_reason": "tool_calls"}]}
    assert reply_from_json(json.dumps(body).encode()) == Reply("", [call], "tool_calls")


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"{}", b'{"choices": []}', b'{"choices": [{}]}', b'{"choices": [{"message": []}]}',
                                 b'{"choices": "x"}', b"\xff\xfe"])
def test_anything_but_a_chat_completion_gives_none(raw: bytes) -> None:
    assert reply_from_json(raw) is None


def test_a_corrupt_gzip_body_gives_none() -> None:
    assert reply_from_json(b"\x1f\x8b not really gzip", "gzip") is None
