"""Long conversations for the overflow tests and bench/bench_long_prompt.py: many turns, tool exchanges, one early fact;
as chat messages, Responses input items or Messages turns."""

from __future__ import annotations

import random
from typing import Any

WORDS = "garden river coffee mountain bicycle guitar kitchen window jacket museum teacher violin harbour pepper lantern".split()
SYSTEM = "You are a helpful assistant. Answer briefly."
FACT = "By the way, my locker code is 4417."
QUESTION = "What was my locker code again?"


def tool_call(call_id: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]}


def conversation(turns: int = 60, words: int = 215, seed: int = 1, fact_turn: int = 2) -> list[dict[str, Any]]:
    """`turns` user/assistant turns of `words` filler words each (a tool exchange every tenth), FACT said in
    turn `fact_turn`, ending with QUESTION. 60 turns of 215 words are ~27k cl100k tokens."""
    rng = random.Random(seed)

    def filler(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)) + "."

    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for turn in range(turns):
        messages.append({"role": "user", "content": (FACT + " " if turn == fact_turn else "") + filler(words)})
        if turn % 10 == 5:
            messages.append(tool_call(f"call_{turn}"))
            messages.append({"role": "tool", "tool_call_id": f"call_{turn}", "content": filler(words // 4)})
        messages.append({"role": "assistant", "content": filler(words)})
    messages.append({"role": "user", "content": QUESTION})
    return messages


def tool_pairs_are_whole(messages: list[dict[str, Any]]) -> bool:
    """Every tool call has its result right after it and every result follows its call."""
    open_calls: set[str] = set()
    for message in messages:
        if message.get("role") == "tool":
            if message.get("tool_call_id") not in open_calls:
                return False
            open_calls.discard(message["tool_call_id"])
            continue
        if open_calls:
            return False  # a call whose result never came
        open_calls = {c["id"] for c in message.get("tool_calls") or []}
    return not open_calls


def responses_input(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat conversation as Responses input items (its system message goes to `instructions`): a tool call
    becomes a reasoning item, the function_call and its function_call_output."""
    items: list[dict[str, Any]] = []
    for message in messages[1:]:
        if message["role"] == "user":
            items.append({"role": "user", "content": message["content"]})
        elif message.get("tool_calls"):
            call = message["tool_calls"][0]
            items.append({"type": "reasoning", "id": "rs_" + call["id"], "summary": []})
            items.append({"type": "function_call", "call_id": call["id"], "name": call["function"]["name"], "arguments": call["function"]["arguments"]})
        elif message["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": message["tool_call_id"], "output": message["content"]})
        else:
            items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": message["content"]}]})
    return items


def messages_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat conversation as Messages turns (its system message goes to `system`): a tool call becomes a
    tool_use block, its result a tool_result block in the next user turn."""
    turns: list[dict[str, Any]] = []
    for message in messages[1:]:
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            turns.append({"role": "assistant", "content": [{"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {"q": "x"}}]})
        elif message["role"] == "tool":
            turns.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": message["content"]}]})
        else:
            turns.append({"role": message["role"], "content": message["content"]})
    return turns


# Rules the overflow tests run under: an 8k window picked by a header, with trimming on or off.
WINDOW_RULES = """
[[rule]]
name = "off-8k"
match = { header = { "X-Overflow" = "off" } }
context_window = 8192
overflow = "off"

[[rule]]
name = "8k"
match = { header = { "X-Window" = "8k" } }
context_window = 8192
"""
