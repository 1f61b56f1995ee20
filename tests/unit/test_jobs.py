"""extraction/jobs.py: which messages of an exchange a job keeps, within its bounds."""

from __future__ import annotations

from gateway.exchange import Reply
from gateway.extraction.jobs import JobBounds, job_messages


def test_job_bounds_keep_the_newest_messages_contiguous_and_cut_whole_characters() -> None:
    payload = {"messages": [
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "context"},
        {"role": "user", "content": "é" * 40},  # 80 bytes
        {"role": "tool", "content": "ignored role"},
        {"role": "user", "content": "ü" * 30},  # 60 bytes
    ]}
    kept, cut = job_messages(payload, Reply("reply"), ("user",), JobBounds(max_messages=10, max_bytes=100))
    assert [m.text for m in kept] == ["ü" * 30] and cut == 2  # "é"*40 does not fit; the assistant context is cut with it
    kept, cut = job_messages(payload, Reply("reply"), ("user",), JobBounds(max_messages=10, max_bytes=41))
    assert [m.text for m in kept] == ["ü" * 20] and cut == 2  # the newest alone is over: its start, never half a character
    kept, cut = job_messages(payload, Reply("reply"), ("user", "assistant"), JobBounds(max_messages=2, max_bytes=1000))
    assert [(m.role, m.text, m.source) for m in kept] == [("user", "é" * 40, True), ("user", "ü" * 30, True), ("assistant", "reply", True)]
    assert cut == 1
    kept, cut = job_messages(payload, Reply("reply"), ("user",), JobBounds(max_messages=10, max_bytes=1000))
    assert [m.text for m in kept] == ["context", "é" * 40, "ü" * 30] and cut == 0  # within bounds: the turn as before
