"""The Anthropic Messages API (`/v1/messages`) with memory, driven by the official `anthropic` SDK against a
fake that speaks the real API's JSON, typed SSE events and error shape."""

from __future__ import annotations

from typing import Any, Iterator

import anthropic
import httpx
import pytest

from .extraction_helpers import flush
from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import END, START, add_memory, tenant_of

KEY = "sk-ant-messages-tests-91c2"
MODEL = "claude-fake-1"
TOOLS = [{"name": "get_weather", "description": "Weather of a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # 'upstream': the main upstream speaks /v1/messages too (as vLLM and LiteLLM do), one setting points both at it.
    gateway = Gateway(upstream.url, tmp_path_factory.mktemp("messages") / "data", anthropic_upstream_url="upstream").start()
    yield gateway
    gateway.stop()


def client(gw: Gateway, headers: dict[str, str] | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=30, default_headers=headers or {})


def last_sent(upstream: FakeUpstream) -> Any:
    return upstream.api_requests("/v1/messages")[-1]


def system_of(body: dict[str, Any]) -> str:
    system = body.get("system") or ""
    return system if isinstance(system, str) else "".join(b["text"] for b in system)


def user_texts(gw: Gateway, user: str) -> list[str]:
    with gw.admin() as admin:
        response = admin.get(f"/tenants/{tenant_of(KEY)}/users/{user}/memories")
    return [] if response.status_code == 404 else sorted(m["text"] for m in response.json()["memories"])


def test_x_api_key_is_the_same_tenant_as_the_key_sent_as_bearer_and_metadata_names_the_user(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "mia", "Mia plays the cello")  # the tenant of KEY as a Bearer token
    body = {"model": MODEL, "max_tokens": 100, "metadata": {"user_id": "mia"}, "messages": [{"role": "user", "content": "Which instrument do I play?"}]}
    # Older SDKs, curl and most tools send the key as x-api-key; this SDK sends it as a Bearer token.
    by_x_api_key = httpx.post(gw.v1 + "/messages", json=body, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert by_x_api_key.headers["X-Memory-Injected"] == "1" and "Mia plays the cello" in last_sent(upstream).json()["system"]
    assert last_sent(upstream).headers["x-api-key"] == KEY
    raw = client(gw).messages.with_raw_response.create(
        model=MODEL, max_tokens=100, system="You are a music teacher.", metadata={"user_id": "mia"},
        messages=[{"role": "user", "content": "Which instrument do I play?"}])
    assert raw.headers["X-Memory-Status"] == "ok" and raw.headers["X-Memory-Injected"] == "1"
    body = last_sent(upstream).json()
    assert body["system"].startswith("You are a music teacher.\n\n" + START) and body["system"].endswith(END)
    assert "Mia plays the cello" in body["system"]
    assert body["messages"] == [{"role": "user", "content": "Which instrument do I play?"}]
    assert raw.parse().content[0].text == "echo: Which instrument do I play?"


def test_a_list_system_gets_a_new_block_after_the_cached_ones_which_are_untouched(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "ken", "Ken is vegetarian")
    system = [{"type": "text", "text": "You are a chef.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Long recipe book...", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    client(gw, {"X-Memory-User-Id": "ken"}).messages.create(model=MODEL, max_tokens=100, system=system,
                                                            messages=[{"role": "user", "content": "Plan a vegetarian dinner"}])
    sent = last_sent(upstream).json()["system"]
    assert sent[:2] == system and len(sent) == 3
    assert sent[2]["type"] == "text" and "cache_control" not in sent[2] and "Ken is vegetarian" in sent[2]["text"]


def test_headers_reach_the_upstream_but_memory_headers_never_do(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "hal", "Hal prefers metric units")
    headers = {"X-Memory-User-Id": "hal", "X-Memory-Session-Id": "s1", "anthropic-beta": "prompt-caching-2024-07-31"}
    client(gw, headers).messages.create(model=MODEL, max_tokens=100, metadata={"user_id": "someone-else"},
                                        messages=[{"role": "user", "content": "How tall is Everest in my units?"}])
    sent = last_sent(upstream)
    assert sent.headers["authorization"] == f"Bearer {KEY}" and sent.headers["anthropic-version"] and sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert not any(name.startswith("x-memory-") for name in sent.headers)
    assert "Hal prefers metric units" in system_of(sent.json())  # the header's user, not metadata's


def test_answers_are_learned_from_json_and_streams(gw: Gateway) -> None:
    c = client(gw, {"X-Memory-User-Id": "ada"})
    c.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "I prefer dark mode in every editor."}])
    with c.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": [{"type": "text", "text": "I live in Oslo."}]}]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text == "echo: I live in Oslo."
    events = [e.type for e in c.messages.create(model=MODEL, max_tokens=100, stream=True, messages=[{"role": "user", "content": "I work as a nurse."}])]
    assert events[0] == "message_start" and events[-1] == "message_stop" and "content_block_delta" in events
    flush(gw)
    learned = " | ".join(user_texts(gw, "ada"))
    for fact in ("dark mode", "Oslo", "nurse"):
        assert fact in learned, learned


def test_tool_use_round_trips_and_tool_results_are_not_the_users_words(gw: Gateway, upstream: FakeUpstream) -> None:
    c = client(gw, {"X-Memory-User-Id": "ivy"})
    first = c.messages.create(model="fake-tools", max_tokens=100, tools=TOOLS, messages=[{"role": "user", "content": "Weather in Paris?"}])
    use = first.content[1]
    assert first.stop_reason == "tool_use" and use.type == "tool_use" and use.input == {"city": "Paris"}
    with c.messages.stream(model="fake-tools", max_tokens=100, tools=TOOLS, messages=[{"role": "user", "content": "And in Rome?"}]) as stream:
        assert stream.get_final_message().content[1].input == {"city": "Paris"}
    history = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "I prefer sunny days. 21C."}]}]
    c.messages.create(model=MODEL, max_tokens=100, tools=TOOLS, messages=history)
    assert last_sent(upstream).json()["messages"] == history
    flush(gw)
    assert not any("sunny" in text for text in user_texts(gw, "ivy"))


def test_errors_are_in_anthropics_shape_and_failed_streams_make_no_job(gw: Gateway) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "X-Memory-User-Id": "gus"}
    body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    ours = [httpx.post(gw.v1 + "/messages", json=body, headers={**headers, "X-Memory-Mode": "sideways"}),
            httpx.post(gw.v1 + "/messages", content=b"[1, 2", headers={**headers, "Content-Type": "application/json"})]
    for response in ours:
        assert response.status_code == 400
        assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"
        assert response.json()["error"]["message"]
    c = client(gw, {"X-Memory-User-Id": "gus"})
    with pytest.raises(anthropic.BadRequestError):
        c.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Memory-Mode": "sideways"})
    with pytest.raises(anthropic.RateLimitError):
        c.messages.create(model="fake-error-429", max_tokens=10, messages=[{"role": "user", "content": "I prefer tea."}])
    skipped = gw.metric("memgate_capture_skipped_total", api="messages")
    with pytest.raises(anthropic.APIStatusError):
        list(c.messages.create(model="fake-failed", max_tokens=10, stream=True, messages=[{"role": "user", "content": "I prefer tea."}]))
    assert gw.metric("memgate_capture_skipped_total", api="messages") == skipped + 1
    flush(gw)
    assert user_texts(gw, "gus") == []


def test_a_stream_reaches_the_client_byte_for_byte_and_count_tokens_passes_through(gw: Gateway, upstream: FakeUpstream) -> None:
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "I like chess."}]}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "X-Memory-User-Id": "bo"}
    direct = httpx.post(upstream.url + "/messages", json=body, headers=headers).content
    through = httpx.post(gw.v1 + "/messages", json=body, headers=headers).content
    assert through == direct and b"event: message_stop" in through
    counted = client(gw).messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    assert counted.input_tokens > 0
