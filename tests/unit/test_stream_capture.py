"""The stream capture (a pure function of the bytes it is fed): never raises, linear on long lines."""

from __future__ import annotations

import json
import time

from gateway.replies import StreamCapture


def event(delta: dict) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}).encode() + b"\n\n"


def test_an_event_shape_the_capture_cannot_read_stops_it_without_raising() -> None:
    for odd in ({"tool_calls": [{"index": None}]}, {"tool_calls": [{"index": 0, "function": "x"}]}, {"tool_calls": 5},
                {"tool_calls": [{"index": 0, "function": {"name": 7}}]}):
        capture = StreamCapture()
        for chunk in (event({"content": "a"}), event(odd), event({"content": "b"}), b"data: [DONE]\n\n"):
            capture.feed(chunk)  # must not raise
        assert capture.error is not None and capture.reply() is None, odd


def test_a_multi_megabyte_line_fed_in_small_pieces_is_read_in_linear_time() -> None:
    text = "x" * (8 << 20)
    line = event({"content": text}) + b"data: [DONE]\n\n"
    capture = StreamCapture()
    started = time.perf_counter()
    for start in range(0, len(line), 1024):
        capture.feed(line[start : start + 1024])
    reply = capture.reply()
    elapsed = time.perf_counter() - started
    assert reply is not None and reply.content == text
    # 8,200 pieces: joining each into the pending line again (quadratic) copied ~35 GB and took tens of seconds.
    assert elapsed < 3.0, elapsed


def test_lines_split_anywhere_assemble_the_same_reply() -> None:
    stream = event({"role": "assistant", "content": ""}) + event({"content": "héllo "}) + event({"content": "world"}) + b"data: [DONE]\r\n\r\n"
    for size in (1, 2, 3, 7, 64, len(stream)):
        capture = StreamCapture()
        for start in range(0, len(stream), size):
            capture.feed(stream[start : start + size])
        reply = capture.reply()
        assert reply is not None and reply.content == "héllo world", size
