"""exchange.py: content_texts, the one reader of a chat message's text for recall, jobs, replies and tokens."""

from __future__ import annotations

import pytest

from gateway.exchange import content_texts


def test_a_string_content_is_one_piece() -> None:
    assert content_texts("hi") == ["hi"]


def test_content_parts_give_their_string_texts_in_order_and_skip_the_rest() -> None:
    content = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, "junk",
               {"type": "text", "text": 5}, {"type": "text", "text": "b"}]
    assert content_texts(content) == ["a", "b"]


@pytest.mark.parametrize("content", [None, 5, {"text": "a dict is not a part list"}, []])
def test_anything_else_has_no_text(content: object) -> None:
    assert content_texts(content) == []
