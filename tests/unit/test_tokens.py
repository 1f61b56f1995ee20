"""memory/tokens.py: exact counts, the free upper bound, the caller's reserve and context windows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.memory import tokens
from gateway.memory.tokens import (
    DEFAULT_CONTEXT_WINDOW, IMAGE_PART_TOKENS, PER_MESSAGE_TOKENS, completion_reserve, context_window, count, memory_budget, prompt_tokens,
)

MODEL = "gpt-4o"


def test_count_of_empty_text_is_zero() -> None:
    assert count("") == 0


def test_count_is_the_encodings_token_count() -> None:
    assert count("hello world", MODEL) == len(tokens.encoding_for(MODEL).encode_ordinary("hello world"))


def test_special_token_text_is_counted_as_plain_text() -> None:
    assert count("<|endoftext|>") > 1


def test_an_unknown_model_counts_with_the_fallback_encoding() -> None:
    assert tokens.encoding_for("no-such-model").name == tokens.FALLBACK_ENCODING


def test_a_message_costs_its_framing_plus_its_text() -> None:
    payload = {"messages": [{"role": "user", "content": "hello world"}]}
    assert prompt_tokens(payload, MODEL, exact=True) == PER_MESSAGE_TOKENS + count("hello world", MODEL)


def test_the_estimate_is_the_utf8_byte_count() -> None:
    payload = {"messages": [{"role": "user", "content": "héllo"}]}
    assert prompt_tokens(payload, MODEL, exact=False) == PER_MESSAGE_TOKENS + 6


def test_an_empty_payload_costs_nothing() -> None:
    assert prompt_tokens({}, MODEL, exact=True) == prompt_tokens({}, MODEL, exact=False) == 0


def test_image_parts_cost_a_fixed_bound() -> None:
    payload = {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:x"}}]}]}
    assert prompt_tokens(payload, MODEL, exact=True) == PER_MESSAGE_TOKENS + IMAGE_PART_TOKENS + count("look", MODEL)


def test_tool_calls_names_and_tools_are_counted() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "weather"}'}}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    bare = {"messages": [{"role": "assistant", "content": None}]}
    full = {"messages": [{"role": "assistant", "content": None, "tool_calls": [call], "name": "bot"}], "tools": tools}
    assert prompt_tokens(full, MODEL, exact=True) > prompt_tokens(bare, MODEL, exact=True) + count('{"q": "weather"}', MODEL)


@pytest.mark.parametrize("messages", [None, "hi", [None, 5, "x"], [{"role": "user", "content": 5, "tool_calls": "x"}]])
def test_malformed_messages_never_raise(messages: object) -> None:
    assert prompt_tokens({"messages": messages}, MODEL, exact=True) >= 0


def test_lone_surrogates_are_counted_not_raised() -> None:
    payload = {"messages": [{"role": "user", "content": "caf\ud800"}]}
    assert prompt_tokens(payload, MODEL, exact=True) <= prompt_tokens(payload, MODEL, exact=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=5))
def test_the_estimate_is_never_below_the_exact_count(texts: list[str]) -> None:
    payload = {"messages": [{"role": "user", "content": t} for t in texts]}
    assert prompt_tokens(payload, MODEL, exact=False) >= prompt_tokens(payload, MODEL, exact=True)


def test_completion_reserve_prefers_max_completion_tokens() -> None:
    assert completion_reserve({"max_completion_tokens": 100, "max_tokens": 50}) == 100


def test_completion_reserve_falls_back_to_max_tokens() -> None:
    assert completion_reserve({"max_tokens": 50}) == 50


@pytest.mark.parametrize("value", [None, 0, -5, True, 1.5, "100"])
def test_completion_reserve_ignores_unusable_values(value: object) -> None:
    assert completion_reserve({"max_tokens": value}) == 0


@pytest.mark.parametrize("model,window", [
    ("gpt-4o", 128_000), ("gpt-4o-mini", 128_000), ("GPT-4O", 128_000), ("openai/gpt-4o", 128_000), ("gpt-4", 8_192),
    ("gpt-4-turbo-preview", 128_000), ("gpt-4.1-mini", 1_047_576), ("gpt-3.5-turbo", 16_385), ("o3-mini", 200_000),
    ("llama-3.1-70b", 131_072), ("llama-3-8b", 8_192), ("claude-3-5-sonnet", 200_000), ("", DEFAULT_CONTEXT_WINDOW),
    ("my-local-model", DEFAULT_CONTEXT_WINDOW),
])
def test_context_window_uses_the_longest_matching_prefix(model: str, window: int) -> None:
    assert context_window(model) == window


def test_memory_budget_is_the_configured_budget_when_there_is_room() -> None:
    assert memory_budget({"messages": [{"role": "user", "content": "hi"}]}, MODEL, 1024, 0.25) == 1024


def test_memory_budget_shrinks_to_a_share_of_the_room_left() -> None:
    payload = {"messages": [{"role": "user", "content": "word " * 7000}], "max_tokens": 500}
    room = context_window("gpt-4") - prompt_tokens(payload, "gpt-4", exact=True) - 500
    assert memory_budget(payload, "gpt-4", 1024, 0.25) == int(0.25 * room)


def test_memory_budget_is_zero_when_the_prompt_fills_the_window() -> None:
    assert memory_budget({"messages": [{"role": "user", "content": "word " * 20000}]}, "gpt-4", 1024, 0.25) == 0
