"""The OpenAI Responses API (`/v1/responses`) with memory, driven by the official `openai` SDK against a fake
that speaks the real API's JSON, typed SSE events and stored-response routes."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import openai
import pytest

from .extraction_helpers import flush
from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import END, START, add_memory, tenant_of

KEY = "sk-responses-tests-7f3a"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(upstream.url, tmp_path_factory.mktemp("responses") / "data").start()
    yield gateway
    gateway.stop()


def client(gw: Gateway, user: str | None = None) -> openai.OpenAI:
    headers = {"X-Memory-User-Id": user} if user else {}
    return openai.OpenAI(base_url=gw.v1, api_key=KEY, max_retries=0, timeout=30, default_headers=headers)


def last_response_request(upstream: FakeUpstream) -> dict[str, Any]:
    return upstream.api_requests("/v1/responses")[-1].json()


def block_of(text: str) -> str:
    start = text.find(START)
    return text[start : text.index(END, start) + len(END)] if start >= 0 else ""


def user_texts(gw: Gateway, user: str) -> list[str]:
    with gw.admin() as admin:
        response = admin.get(f"/tenants/{tenant_of(KEY)}/users/{user}/memories")
    return [] if response.status_code == 404 else sorted(m["text"] for m in response.json()["memories"])


def test_safety_identifier_names_the_user_on_chat_completions_and_responses(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "safe-sam", "Sam keeps bees on the roof")
    chat = client(gw).chat.completions.with_raw_response.create(  # read only: the turn is not learned as an episode
        model="gpt-4o", messages=[{"role": "user", "content": "Tell me about my bees"}], safety_identifier="safe-sam", extra_headers={"X-Memory-Mode": "read"})
    assert chat.headers["X-Memory-Status"] == "ok" and chat.headers["X-Memory-Injected"] == "1"
    assert "Sam keeps bees on the roof" in upstream.last_chat()["messages"][0]["content"]
    reply = client(gw).responses.with_raw_response.create(model="gpt-4o", input="Tell me about my bees", safety_identifier="safe-sam")
    assert reply.headers["X-Memory-Injected"] == "1"
    assert "Sam keeps bees on the roof" in last_response_request(upstream)["instructions"]


def test_the_block_is_appended_to_the_callers_instructions_and_input_items_are_untouched(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "ria", "Ria drinks green tea without sugar")
    add_memory(gw, KEY, "ria", "Ria's cat is called Miso")
    items = [{"role": "user", "content": [{"type": "input_text", "text": "Earlier question"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Earlier answer"}]},
             {"role": "user", "content": [{"type": "input_text", "text": "Which tea should I order?"}]}]
    raw = client(gw, "ria").responses.with_raw_response.create(model="gpt-4o", instructions="Be brief.\nAnswer in English.", input=items)
    assert raw.headers["X-Memory-Status"] == "ok" and int(raw.headers["X-Memory-Injected"]) >= 1
    sent = last_response_request(upstream)
    assert sent["instructions"].startswith("Be brief.\nAnswer in English.\n\n" + START)
    assert "Ria drinks green tea without sugar" in block_of(sent["instructions"])
    assert sent["input"] == items
    assert raw.parse().output_text == "echo: Which tea should I order?"


def test_previous_response_id_and_conversation_pass_untouched_and_instructions_are_created(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "pat", "Pat is allergic to peanuts")
    client(gw, "pat").responses.create(model="gpt-4o", input="Can I eat satay, given my peanut allergy?", previous_response_id="resp_earlier123")
    sent = last_response_request(upstream)
    assert sent["previous_response_id"] == "resp_earlier123"
    assert sent["input"] == "Can I eat satay, given my peanut allergy?"
    assert "Pat is allergic to peanuts" in block_of(sent["instructions"]) and sent["instructions"].startswith(START)
    client(gw, "pat").responses.create(model="gpt-4o", input=[{"role": "user", "content": "peanuts in pad thai?"}], conversation="conv_abc")
    sent = last_response_request(upstream)
    assert sent["conversation"] == "conv_abc" and sent["input"] == [{"role": "user", "content": "peanuts in pad thai?"}]
    assert "Pat is allergic to peanuts" in sent["instructions"]


def test_answers_are_learned_from_json_streams_and_the_stream_helper(gw: Gateway) -> None:
    c = client(gw, "lea")
    assert c.responses.create(model="gpt-4o", input="I prefer window seats on trains.").output_text == "echo: I prefer window seats on trains."
    events = list(c.responses.create(model="gpt-4o", input=[{"role": "user", "content": [{"type": "input_text", "text": "I live in Lisbon."}]}], stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "echo: I live in Lisbon."
    with c.responses.stream(model="gpt-4o", input="I work as a translator.") as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas == final.output_text == "echo: I work as a translator."
    flush(gw)
    learned = " | ".join(user_texts(gw, "lea"))
    for fact in ("window seats", "Lisbon", "translator"):
        assert fact in learned, learned


def test_tool_calls_and_their_outputs_round_trip_with_memory(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "tom", "Tom is travelling to Paris next week", pinned=True)  # core profile: a tool-output turn has no query
    c = client(gw, "tom")
    first = c.responses.create(model="fake-tools", input="What's the weather where I am going?", tools=TOOLS)
    call = first.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    with c.responses.stream(model="fake-tools", input="And tomorrow?", tools=TOOLS) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    follow = [{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}]
    answer = c.responses.create(model="gpt-4o", input=follow, previous_response_id=first.id, tools=TOOLS)
    sent = last_response_request(upstream)
    assert sent["input"] == follow and sent["previous_response_id"] == first.id
    assert "Tom is travelling to Paris next week" in sent["instructions"]
    assert answer.status == "completed"


def test_failed_incomplete_cancelled_and_background_responses_make_no_job(gw: Gateway, upstream: FakeUpstream) -> None:
    c = client(gw, "fay")
    skipped = gw.metric("memgate_capture_skipped_total", api="responses")
    for model in ("fake-failed", "fake-incomplete"):
        assert c.responses.create(model=model, input="I prefer tea over coffee.").status in ("failed", "incomplete")
        events = [e.type for e in c.responses.create(model=model, input="I prefer tea over coffee.", stream=True)]
        assert events[-1] in ("response.failed", "response.incomplete")
    queued = c.responses.create(model="gpt-4o", input="I prefer tea over coffee.", background=True)
    assert queued.status == "queued"
    assert c.responses.cancel(queued.id).status == "cancelled"
    with pytest.raises(openai.RateLimitError):
        c.responses.create(model="fake-error-429", input="I prefer tea over coffee.")
    assert gw.metric("memgate_capture_skipped_total", api="responses") == skipped + 6
    flush(gw)
    assert user_texts(gw, "fay") == []


def test_the_rest_of_the_responses_surface_passes_through(gw: Gateway) -> None:
    c = client(gw, "rob")
    created = c.responses.create(model="gpt-4o", input="Hello there", background=True)
    assert c.responses.retrieve(created.id).id == created.id
    items = c.responses.input_items.list(created.id)
    assert items.data[0].content[0].text == "Hello there"
    assert c.responses.with_raw_response.delete(created.id).http_response.status_code == 200
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(created.id)


def test_a_stream_reaches_the_client_byte_for_byte(gw: Gateway, upstream: FakeUpstream) -> None:
    body = {"model": "gpt-4o", "input": "I like long walks.", "stream": True}
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": "bea"}
    direct = httpx.post(upstream.url + "/responses", json=body, headers=headers).content
    through = httpx.post(gw.v1 + "/responses", json=body, headers=headers).content
    assert through == direct and b"event: response.completed" in through


def test_gateway_errors_on_the_responses_route_are_openai_shaped(gw: Gateway) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": "eve"}
    bad_mode = httpx.post(gw.v1 + "/responses", json={"model": "m", "input": "hi"}, headers={**headers, "X-Memory-Mode": "sideways"})
    not_json = httpx.post(gw.v1 + "/responses", content=b"{nope", headers={**headers, "Content-Type": "application/json"})
    for response in (bad_mode, not_json):
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_memory_mode_narrows_responses_as_it_does_chat(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "max", "Max collects vinyl records")
    off = client(gw, "max").responses.with_raw_response.create(model="gpt-4o", input="I prefer jazz. Any vinyl tips?",
                                                               extra_headers={"X-Memory-Mode": "off"})
    assert off.headers["X-Memory-Status"] == "off" and "instructions" not in last_response_request(upstream)
    read = client(gw, "max").responses.with_raw_response.create(model="gpt-4o", input="I prefer jazz. Any vinyl tips?",
                                                                extra_headers={"X-Memory-Mode": "read"})
    assert read.headers["X-Memory-Injected"] == "1" and "Max collects vinyl records" in last_response_request(upstream)["instructions"]
    flush(gw)
    assert user_texts(gw, "max") == ["Max collects vinyl records"]  # neither request was learned from
    assert gw.metric("memgate_memory_status_total", status="off", api="responses") >= 1
    assert gw.metric("memgate_memories_injected_count", api="responses") >= 1
