"""Conversations longer than the model's context window, through a real gateway: trimmed to fit (overflow =
"fit") with the system message, the latest turn, whole tool exchanges and the early facts kept; forwarded
byte for byte when they fit or when overflow is "off"; unknown models get the documented default window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from openai import OpenAI

from gateway.memory.tokens import encoding_for
from gateway.memory.windows import DEFAULT_CONTEXT_WINDOW

from .conversations import FACT, QUESTION, SYSTEM, WINDOW_RULES as RULES, conversation, tool_call, tool_pairs_are_whole
from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import add_memory
from .test_rules import memgate

KEY = "sk-overflow-tests"
RESERVE = 1024  # overflow_reserve_tokens' default: kept for the answer when the request sets no max_tokens


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("overflow")
    (root / "rules").mkdir()
    (root / "rules" / "windows.toml").write_text(RULES)
    gateway = Gateway(upstream.url, root / "data", rules=root / "rules").start()
    add_memory(gateway, KEY, "olga", "I prefer aisle seats on long flights", pinned=True)  # pinned: always in the core profile
    yield gateway
    gateway.stop()


def prompt_tokens(messages: list[dict[str, Any]], model: str = "gpt-4o") -> int:
    """The prompt as the upstream got it, counted here: 4 framing tokens per message plus every text in it."""
    encoding = encoding_for(model)
    total = 0
    for message in messages:
        texts = [message.get("content") or "", message.get("tool_call_id") or ""]
        texts += [c["function"]["name"] + c["function"]["arguments"] for c in message.get("tool_calls") or []]
        total += 4 + sum(len(encoding.encode_ordinary(t)) for t in texts)
    return total


def post(gw: Gateway, body: bytes, user: str | None, **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **({"X-Memory-User-Id": user} if user else {}), **headers}
    return httpx.post(gw.v1 + "/chat/completions", content=body, headers=sent, timeout=60)


def test_a_60_turn_conversation_is_trimmed_to_an_8k_window_keeping_system_last_turn_tool_pairs_and_the_early_fact(gw: Gateway, upstream: FakeUpstream) -> None:
    messages = conversation()
    assert prompt_tokens(messages) > 25_000
    before = gw.metric("memgate_overflow_total", outcome="trimmed")
    client = OpenAI(base_url=gw.v1, api_key=KEY)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages, user="olga", extra_headers={"X-Window": "8k"})
    assert raw.parse().choices[0].message.content == "echo: " + QUESTION
    sent = upstream.last_chat()["messages"]
    assert prompt_tokens(sent) <= 8192 - RESERVE
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith(SYSTEM)
    assert sent[-1] == messages[-1]
    assert tool_pairs_are_whole(sent) and any(m.get("tool_calls") for m in sent)  # turn 56's tool exchange is kept whole
    assert sent[1:] == messages[len(messages) - len(sent) + 1:]  # the latest turns, in order, untouched
    assert json.dumps(FACT) in sent[0]["content"]  # the locker code from turn 3 of 60, quoted
    assert raw.headers["X-Memory-Status"] == "ok", raw.headers
    assert "aisle seats" in sent[0]["content"] and int(raw.headers["X-Memory-Injected"]) >= 1  # memories still fit
    assert int(raw.headers["X-Memory-Trimmed-Messages"]) == len(messages) - len(sent)
    assert int(raw.headers["X-Memory-Trimmed-Tokens"]) > 15_000
    assert gw.metric("memgate_overflow_total", outcome="trimmed") == before + 1


def test_the_same_conversation_with_overflow_off_is_forwarded_byte_for_byte(gw: Gateway, upstream: FakeUpstream) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": conversation()}, indent=1).encode()
    before = gw.metric("memgate_overflow_total", outcome="over")
    response = post(gw, body, "olga", **{"X-Overflow": "off"})
    assert response.status_code == 200
    assert upstream.chat_requests()[-1].body == body  # no trimming, and no memories: the window has no room
    assert "X-Memory-Trimmed-Messages" not in response.headers and response.headers["X-Memory-Injected"] == "0"
    assert gw.metric("memgate_overflow_total", outcome="over") == before + 1


def test_a_conversation_that_fits_is_forwarded_byte_for_byte(gw: Gateway, upstream: FakeUpstream) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": conversation(seed=2)}, indent=2).encode()  # ~27k tokens of a 128k window
    for _ in range(2):  # the second time its messages' counts come from the cache
        response = post(gw, body, "nobody-yet")
        assert response.status_code == 200 and "X-Memory-Trimmed-Messages" not in response.headers
        assert upstream.chat_requests()[-1].body == body


def test_a_100_message_tool_loop_is_trimmed_to_whole_tool_exchanges_streamed_too(gw: Gateway, upstream: FakeUpstream) -> None:
    messages = conversation(turns=4) + [{"role": "user", "content": "Research harbours and report."}]
    for k in range(50):
        messages += [tool_call(f"loop_{k}"), {"role": "tool", "tool_call_id": f"loop_{k}", "content": f"result {k}: " + "harbour pepper " * 120}]
    assert prompt_tokens(messages) > 12_000
    body = json.dumps({"model": "gpt-4o", "messages": messages, "stream": True}).encode()
    with httpx.stream("POST", gw.v1 + "/chat/completions", content=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}", "X-Window": "8k", "Content-Type": "application/json"}) as response:
        assert response.status_code == 200 and "data: [DONE]" in response.read().decode()
        trimmed = int(response.headers["X-Memory-Trimmed-Messages"])
    sent = upstream.last_chat()["messages"]
    assert prompt_tokens(sent) <= 8192 - RESERVE and len(sent) == len(messages) - trimmed
    assert tool_pairs_are_whole(sent)
    assert {"role": "user", "content": "Research harbours and report."} in sent and sent[-2:] == messages[-2:]


def test_an_unknown_model_gets_the_default_window_a_metric_and_one_log_line(gw: Gateway, upstream: FakeUpstream) -> None:
    before = gw.metric("memgate_context_window_unknown_model_total")
    body = json.dumps({"model": "my-finetune-v7", "messages": conversation(turns=30)}).encode()
    for _ in range(2):
        response = post(gw, body, None)
        assert response.status_code == 200 and int(response.headers["X-Memory-Trimmed-Messages"]) > 0  # memory off: fitting still applies
        assert prompt_tokens(upstream.last_chat()["messages"]) <= DEFAULT_CONTEXT_WINDOW - RESERVE
    assert gw.metric("memgate_context_window_unknown_model_total") == before + 2
    warnings = [line for line in gw.log().splitlines() if "unknown model" in line]
    assert len(warnings) == 1 and "my-finetune-v7" in warnings[0]


def explain(rules: Path, model: str, *args: str) -> dict[str, Any]:
    result = memgate("rules", "explain", "--rules", str(rules), "--model", model, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["context_window"]


def test_rules_explain_shows_the_window_and_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "windows.toml").write_text(RULES)
    assert explain(tmp_path, "meta-llama/Meta-Llama-3.1-8B-Instruct") == {"tokens": 131_072, "source": "table", "prefix": "meta-llama-3.1"}
    assert explain(tmp_path, "gpt-4o", "--header", "X-Window=8k") == {"tokens": 8192, "source": "rule"}
    assert explain(tmp_path, "my-finetune-v7") == {"tokens": DEFAULT_CONTEXT_WINDOW, "source": "default"}
