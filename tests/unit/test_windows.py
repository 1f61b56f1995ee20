"""memory/windows.py: the context-window table (data, shipped with the package), rule overrides, unknown models."""

from __future__ import annotations

import logging

import pytest

from gateway.memory import windows
from gateway.memory.windows import DEFAULT_CONTEXT_WINDOW, Windows, parse_table, resolve


@pytest.mark.parametrize("model, tokens", [
    ("gpt-4o-mini", 128_000), ("openai/gpt-4.1-mini", 1_047_576), ("gpt-3.5-turbo", 16_385), ("o3-mini", 200_000),
    ("claude-3-5-sonnet-20241022", 200_000), ("meta-llama/Meta-Llama-3.1-8B-Instruct", 131_072), ("meta-llama/Meta-Llama-3-8B-Instruct", 8_192),
    ("llama3.1:8b", 131_072), ("llama3:8b", 8_192), ("llama2:13b", 4_096), ("mistralai/Mistral-7B-Instruct-v0.3", 32_768),
    ("mistral-large-latest", 131_072), ("mixtral:8x22b", 65_536), ("qwen2.5:7b", 32_768), ("Qwen/Qwen2.5-72B-Instruct", 32_768),
    ("deepseek-chat", 65_536), ("deepseek-r1:7b", 131_072), ("gemini-1.5-pro", 2_097_152), ("gemini-2.0-flash", 1_048_576), ("gemma2:9b", 8_192),
])
def test_the_built_in_table_knows_the_models_people_serve(model: str, tokens: int) -> None:
    window = resolve(model, 0)
    assert (window.tokens, window.source) == (tokens, "table")


def test_a_rule_window_overrides_the_table() -> None:
    assert resolve("gpt-4o", 4096).describe() == {"tokens": 4096, "source": "rule"}


def test_an_unknown_model_gets_the_default_counted_every_time_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []
    resolver = Windows(lambda: seen.append(1))
    with caplog.at_level(logging.WARNING, logger="memgate.memory"):
        for _ in range(3):
            assert resolver.resolve("my-finetune-v7", 0).describe() == {"tokens": DEFAULT_CONTEXT_WINDOW, "source": "default"}
        resolver.resolve("my-finetune-v7", 2048)  # a rule window: not unknown
    assert len(seen) == 3
    assert [r.model for r in caplog.records if "unknown model" in r.getMessage()] == ["my-finetune-v7"]  # type: ignore[attr-defined]


def test_the_unknown_model_log_is_bounded() -> None:
    resolver = Windows()
    for k in range(windows.MAX_LOGGED_UNKNOWN + 50):
        resolver.resolve(f"nobody-knows-{k}", 0)
    assert len(resolver._logged) == windows.MAX_LOGGED_UNKNOWN


@pytest.mark.parametrize("text, problem", [
    ('[a]\n"x" = 1\n[b]\n"x" = 2\n', "listed twice"), ('[a]\n"X" = 1\n', "lower-case"), ('[a]\n"x" = 0\n', "positive"), ('"x" = 1\n', "must be a table"),
])
def test_a_broken_table_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_table(text)


def test_the_shipped_table_parses_and_every_prefix_is_reachable() -> None:
    table = windows.table()
    assert len(table) > 60
    for prefix in table:  # no longer prefix is shadowed: each prefix resolves to itself
        assert windows.from_table(prefix).prefix == prefix
