"""Overflow trimming of Responses and Messages requests that carry their history, through a real gateway with
the official SDKs: trimmed in the API's own JSON with instructions/system and the latest turn intact, tool calls
kept with their results (Messages still starting with a user turn and alternating), the early fact quoted;
forwarded byte for byte when they fit, when overflow is "off", or when the history is held server-side."""

from __future__ import annotations

import json
from typing import Any, Iterator

import anthropic
import httpx
import pytest
from openai import OpenAI

from gateway.memory.tokens import encoding_for

from .conversations import FACT, QUESTION, SYSTEM, WINDOW_RULES as RULES, conversation, messages_turns, responses_input
from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import add_memory

KEY = "sk-overflow-apis-tests"
WINDOW = 8192
ANSWER = 1000  # max_output_tokens / max_tokens of every request here


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("overflow-apis")
    (root / "rules").mkdir()
    (root / "rules" / "windows.toml").write_text(RULES)
    gateway = Gateway(upstream.url, root / "data", rules=root / "rules", anthropic_upstream_url="upstream").start()
    add_memory(gateway, KEY, "olga", "I prefer aisle seats on long flights", pinned=True)  # pinned: always in the core profile
    yield gateway
    gateway.stop()


def texts_tokens(texts: list[str], framing: int) -> int:
    encoding = encoding_for("gpt-4o")
    return sum(framing + len(encoding.encode_ordinary(t)) for t in texts)


def item_texts(item: dict[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, list):
        return [str(part.get("text") or part.get("content") or "") for part in content] + [json.dumps(p["input"]) for p in content if "input" in p]
    return [str(content or item.get("output") or ""), str(item.get("name") or "") + str(item.get("arguments") or "")]


def test_a_long_responses_input_is_trimmed_keeping_instructions_latest_turn_calls_with_outputs_and_the_early_fact(gw: Gateway, upstream: FakeUpstream) -> None:
    items = responses_input(conversation())
    assert texts_tokens([t for i in items for t in item_texts(i)], 4) > 25_000
    raw = OpenAI(base_url=gw.v1, api_key=KEY).responses.with_raw_response.create(
        model="gpt-4o", instructions=SYSTEM, input=items, max_output_tokens=ANSWER, user="olga", extra_headers={"X-Window": "8k"})
    assert raw.parse().output_text == "echo: " + QUESTION
    sent = upstream.api_requests("/v1/responses")[-1].json()
    kept = sent["input"]
    assert texts_tokens([sent["instructions"], *(t for i in kept for t in item_texts(i))], 4) <= WINDOW - ANSWER
    assert sent["instructions"].startswith(SYSTEM) and json.dumps(FACT) in sent["instructions"]  # turn 3's locker code, quoted
    assert "aisle seats" in sent["instructions"] and int(raw.headers["X-Memory-Injected"]) >= 1
    assert kept == items[len(items) - len(kept):] and kept[-1] == {"role": "user", "content": QUESTION}  # the latest items, untouched
    assert kept[0]["role"] == "user"
    calls = [i["call_id"] for i in kept if i.get("type") == "function_call"]
    assert calls and calls == [i["call_id"] for i in kept if i.get("type") == "function_call_output"]
    assert all(kept[k + 1].get("call_id") == "call_" + i["id"].removeprefix("rs_call_") for k, i in enumerate(kept) if i.get("type") == "reasoning")
    assert int(raw.headers["X-Memory-Trimmed-Messages"]) == len(items) - len(kept)
    assert int(raw.headers["X-Memory-Trimmed-Tokens"]) > 15_000


def test_a_long_messages_conversation_is_trimmed_starting_with_a_user_turn_alternating_with_whole_tool_exchanges(gw: Gateway, upstream: FakeUpstream) -> None:
    turns = messages_turns(conversation())
    before = gw.metric("memgate_overflow_total", outcome="trimmed")
    client = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=60, default_headers={"X-Window": "8k"})
    raw = client.messages.with_raw_response.create(model="claude-fake-1", max_tokens=ANSWER, system=SYSTEM, messages=turns, metadata={"user_id": "olga"})
    assert raw.parse().content[0].text == "echo: " + QUESTION
    sent = upstream.api_requests("/v1/messages")[-1].json()
    kept = sent["messages"]
    assert texts_tokens([sent["system"], *(t for m in kept for t in item_texts(m))], 4) <= WINDOW - ANSWER
    assert sent["system"].startswith(SYSTEM) and json.dumps(FACT) in sent["system"] and "aisle seats" in sent["system"]
    assert kept == turns[len(turns) - len(kept):] and kept[-1] == {"role": "user", "content": QUESTION}
    assert kept[0]["role"] == "user" and isinstance(kept[0]["content"], str)  # the user's own turn, no orphan tool_result
    assert all(a["role"] != b["role"] for a, b in zip(kept, kept[1:]))
    uses = [k for k, m in enumerate(kept) if isinstance(m["content"], list) and m["content"][0]["type"] == "tool_use"]
    assert uses and all(kept[k + 1]["content"][0]["tool_use_id"] == kept[k]["content"][0]["id"] for k in uses)
    assert int(raw.headers["X-Memory-Trimmed-Messages"]) == len(turns) - len(kept) and int(raw.headers["X-Memory-Trimmed-Tokens"]) > 15_000
    assert gw.metric("memgate_overflow_total", outcome="trimmed") == before + 1


def post(gw: Gateway, path: str, body: bytes, **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "anthropic-version": "2023-06-01", **headers}
    return httpx.post(gw.v1 + path, content=body, headers=sent, timeout=60)


def bodies(turns: int) -> dict[str, dict[str, Any]]:
    messages = conversation(turns=turns)
    return {"/responses": {"model": "gpt-4o", "instructions": SYSTEM, "input": responses_input(messages), "user": "olga"},
            "/messages": {"model": "claude-fake-1", "max_tokens": ANSWER, "system": SYSTEM, "messages": messages_turns(messages), "metadata": {"user_id": "olga"}}}


@pytest.mark.parametrize("path", ["/responses", "/messages"])
def test_with_overflow_off_a_long_conversation_is_forwarded_byte_for_byte(gw: Gateway, upstream: FakeUpstream, path: str) -> None:
    body = json.dumps(bodies(60)[path], indent=1).encode()
    response = post(gw, path, body, **{"X-Overflow": "off"})
    assert response.status_code == 200 and "X-Memory-Trimmed-Messages" not in response.headers
    assert upstream.api_requests("/v1" + path)[-1].body == body  # no trimming, and no memories: the window has no room


@pytest.mark.parametrize("path", ["/responses", "/messages"])
def test_a_conversation_that_fits_is_forwarded_byte_for_byte(gw: Gateway, upstream: FakeUpstream, path: str) -> None:
    payload = bodies(6)[path]
    payload.pop("user", None), payload.pop("metadata", None)  # no user: no memories to add either
    body = json.dumps(payload, indent=2).encode()
    response = post(gw, path, body, **{"X-Window": "8k"})
    assert response.status_code == 200 and "X-Memory-Trimmed-Messages" not in response.headers
    assert upstream.api_requests("/v1" + path)[-1].body == body


def test_a_responses_request_continuing_a_stored_response_is_not_trimmed(gw: Gateway, upstream: FakeUpstream) -> None:
    payload = {**bodies(60)["/responses"], "previous_response_id": "resp_earlier123"}
    del payload["user"]
    body = json.dumps(payload).encode()
    response = post(gw, "/responses", body, **{"X-Window": "8k"})
    assert response.status_code == 200 and "X-Memory-Trimmed-Messages" not in response.headers
    assert upstream.api_requests("/v1/responses")[-1].body == body
