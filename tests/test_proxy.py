"""Transparency: whatever a client sends and gets back through the gateway is what it would send
and get talking to the upstream directly (memory off: no user id, so nothing is injected)."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import openai
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway

KEY = "sk-proxy-test-4f1c"
MESSAGES = [{"role": "user", "content": "hello there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def clients(upstream: FakeUpstream, gateway: Gateway) -> tuple[openai.OpenAI, openai.OpenAI]:
    direct = openai.OpenAI(base_url=upstream.url, api_key=KEY, max_retries=0)
    proxied = openai.OpenAI(base_url=gateway.v1, api_key=KEY, max_retries=0)
    return direct, proxied


# -- the openai SDK sees the same thing either way ---------------------------------------------------


def test_sdk_json_completion_is_the_same_through_the_gateway(upstream: FakeUpstream, gateway: Gateway) -> None:
    direct, proxied = clients(upstream, gateway)
    want = direct.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    got = proxied.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert got.model_dump() == want.model_dump()
    assert got.choices[0].message.content == "echo: hello there"


def test_sdk_streamed_completion_is_the_same_through_the_gateway(upstream: FakeUpstream, gateway: Gateway) -> None:
    direct, proxied = clients(upstream, gateway)
    want = [c.model_dump() for c in direct.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)]
    got = [c.model_dump() for c in proxied.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)]
    assert got == want
    assert "".join(c["choices"][0]["delta"]["content"] or "" for c in got) == "echo: hello there"


def test_async_sdk_gets_the_same_json_and_stream_through_the_gateway(upstream: FakeUpstream, gateway: Gateway) -> None:
    async def run(base_url: str) -> tuple[dict, list[dict]]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0) as client:
            plain = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            return plain.model_dump(), [c.model_dump() async for c in stream]

    want = asyncio.run(run(upstream.url))
    got = asyncio.run(run(gateway.v1))
    assert got == want
    assert got[0]["choices"][0]["message"]["content"] == "echo: hello there"


def test_sdk_tool_call_is_the_same_through_the_gateway(upstream: FakeUpstream, gateway: Gateway) -> None:
    direct, proxied = clients(upstream, gateway)
    want = direct.chat.completions.create(model="fake-tools", messages=MESSAGES, tools=TOOLS)
    got = proxied.chat.completions.create(model="fake-tools", messages=MESSAGES, tools=TOOLS)
    assert got.model_dump() == want.model_dump()
    call = got.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})


def test_sdk_streamed_tool_call_is_the_same_through_the_gateway(upstream: FakeUpstream, gateway: Gateway) -> None:
    direct, proxied = clients(upstream, gateway)
    want = [c.model_dump() for c in direct.chat.completions.create(model="fake-tools", messages=MESSAGES, tools=TOOLS, stream=True)]
    got = [c.model_dump() for c in proxied.chat.completions.create(model="fake-tools", messages=MESSAGES, tools=TOOLS, stream=True)]
    assert got == want
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] or "" for c in got if c["choices"][0]["delta"].get("tool_calls"))
    assert json.loads(arguments) == {"city": "Paris"}


# -- bytes, not just meaning -----------------------------------------------------------------------


def raw_stream(url: str, body: dict) -> tuple[int, dict[str, str], bytes]:
    with httpx.stream("POST", url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as response:
        return response.status_code, dict(response.headers), b"".join(response.iter_raw())


def test_streamed_bytes_reach_the_client_exactly_as_the_upstream_sent_them(upstream: FakeUpstream, gateway: Gateway) -> None:
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    status, _, want = raw_stream(upstream.url, body)
    status_gw, headers, got = raw_stream(gateway.v1, body)
    assert (status_gw, got) == (status, want)
    assert headers["content-type"] == "text/event-stream"
    assert got.endswith(b"data: [DONE]\n\n")


def test_the_first_streamed_chunk_arrives_before_the_upstream_has_finished(upstream: FakeUpstream, gateway: Gateway) -> None:
    # fake-drip sends 50 events 0.5 s apart: a proxy that buffered would show nothing for 25 s.
    body = {"model": "fake-drip", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body, headers={"X-Fake-Delay": "0.5"}, timeout=5) as response:
        first = next(response.iter_raw())
    assert first.startswith(b"data: ") and b"[DONE]" not in first


def test_multipart_image_and_tool_messages_reach_the_upstream_byte_for_byte(upstream: FakeUpstream, gateway: Gateway) -> None:
    messages = [
        {"role": "system", "content": "You see images."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this picture? \u00e9\u00e8 \U0001f600"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk", "detail": "low"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "look", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "a cat"},
    ]
    # Odd spacing and key order on purpose: the gateway must not re-serialise the body.
    raw = json.dumps({"messages": messages, "model": "gpt-4o", "temperature": 0.50}, indent=1, ensure_ascii=True).encode()
    response = httpx.post(gateway.v1 + "/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    received = upstream.chat_requests()[-1]
    assert received.body == raw
    assert response.json()["choices"][0]["message"]["content"] == "echo: What is in this picture? \u00e9\u00e8 \U0001f600"


def test_json_reply_keeps_its_content_length(upstream: FakeUpstream, gateway: Gateway) -> None:
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert response.headers.get("content-length") == str(len(response.content))
    assert response.headers.get("transfer-encoding") is None


def test_compressed_reply_passes_through_still_compressed(upstream: FakeUpstream, gateway: Gateway) -> None:
    # Real upstreams gzip when asked: the client asked, so the client must get the gzip bytes intact.
    body = {"model": "fake-gzip", "messages": MESSAGES}
    headers = {"Accept-Encoding": "gzip"}
    want = httpx.post(upstream.url + "/chat/completions", json=body, headers=headers)
    got = httpx.post(gateway.v1 + "/chat/completions", json=body, headers=headers)
    assert got.headers["content-encoding"] == "gzip"
    assert got.json() == want.json()
    assert got.json()["choices"][0]["message"]["content"] == "echo: hello there"


def test_gateway_adds_no_headers_the_client_did_not_send(upstream: FakeUpstream, gateway: Gateway) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode()
    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    reply = raw_exchange(gateway.port, request)
    assert reply.startswith(b"HTTP/1.1 200")
    received = upstream.chat_requests()[-1]
    assert set(received.headers) == {"host", "content-length"}
    assert received.body == body
    raw_exchange(gateway.port, b"PUT /v1/files/f HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert set(upstream.received[-1].headers) == {"host", "content-length"}


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


# -- every other /v1 path and method ------------------------------------------------------------


def test_sdk_models_and_embeddings_pass_through(upstream: FakeUpstream, gateway: Gateway) -> None:
    direct, proxied = clients(upstream, gateway)
    assert [m.id for m in proxied.models.list()] == [m.id for m in direct.models.list()] == ["fake-model"]
    want = direct.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    got = proxied.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert got.model_dump() == want.model_dump()
    assert upstream.received[-1].path == "/v1/embeddings"


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "PATCH"])
def test_other_methods_and_query_strings_pass_through(method: str, upstream: FakeUpstream, gateway: Gateway) -> None:
    content = b"file-bytes" if method in ("PUT", "PATCH") else None
    response = httpx.request(method, gateway.v1 + "/files/file-1?purpose=fine-tune&limit=2", content=content, headers={"X-Echo": "e1"})
    assert response.status_code == 200
    assert response.json() == {"method": method, "path": "/v1/files/file-1?purpose=fine-tune&limit=2", "body_len": len(content or b""), "echo_header": "e1"}
    assert upstream.received[-1].body == (content or b"")


def test_escaped_characters_in_a_path_stay_escaped(upstream: FakeUpstream, gateway: Gateway) -> None:
    # A decoded %3F would turn part of the path into a query string upstream; %2F would add a segment.
    reply = raw_exchange(gateway.port, b"GET /v1/files/a%2Fb%3Fc%20d?x=%2B%26y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200")
    assert upstream.received[-1].path == "/v1/files/a%2Fb%3Fc%20d?x=%2B%26y"


def test_chunked_upload_is_forwarded_whole(upstream: FakeUpstream, gateway: Gateway) -> None:
    def parts():
        yield b"part-one;"
        yield b"part-two"

    response = httpx.post(gateway.v1 + "/files", content=parts())
    assert response.json()["body_len"] == len(b"part-one;part-two")
    assert upstream.received[-1].body == b"part-one;part-two"


def test_head_request_passes_through(upstream: FakeUpstream, gateway: Gateway) -> None:
    response = httpx.head(gateway.v1 + "/models")
    assert response.status_code == 200
    assert response.content == b""
    assert upstream.received[-1].method == "HEAD"


# -- headers ---------------------------------------------------------------------------------------


def test_provider_headers_are_forwarded_and_control_headers_are_not(upstream: FakeUpstream, gateway: Gateway) -> None:
    headers = {
        "Authorization": f"Bearer {KEY}",
        "OpenAI-Organization": "org-123",
        "OpenAI-Project": "proj-456",
        "OpenAI-Beta": "assistants=v2",
        "X-Memory-Mode": "off",
        "X-Memory-Agent-Id": "agent-1",
        "X-Memory-Session-Id": "s1",
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "hop-by-hop by declaration",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic abc",
    }
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}, headers=headers)
    assert response.status_code == 200
    got = upstream.chat_requests()[-1].headers
    assert got["authorization"] == f"Bearer {KEY}"
    assert (got["openai-organization"], got["openai-project"], got["openai-beta"]) == ("org-123", "proj-456", "assistants=v2")
    assert not [name for name in got if name.startswith("x-memory-")]
    for hop in ("keep-alive", "te", "proxy-authorization", "x-drop-me"):
        assert hop not in got
    assert got.get("connection", "keep-alive").lower() == "keep-alive"
    assert got["host"] == f"127.0.0.1:{upstream.port}"


def test_control_headers_are_stripped_on_passthrough_routes_too(upstream: FakeUpstream, gateway: Gateway) -> None:
    httpx.get(gateway.v1 + "/models", headers={"X-Memory-User-Id": "alice", "Authorization": f"Bearer {KEY}"})
    got = upstream.received[-1].headers
    assert got["authorization"] == f"Bearer {KEY}"
    assert "x-memory-user-id" not in got


def test_upstream_cookies_never_reach_another_caller_or_the_upstream_again(upstream: FakeUpstream, gateway: Gateway) -> None:
    # The fake upstream sets a session cookie on every JSON reply.
    first = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}, headers={"Authorization": "Bearer sk-one"})
    assert "set-cookie" in httpx.post(upstream.url + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}).headers
    assert "set-cookie" not in first.headers
    second = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}, headers={"Authorization": "Bearer sk-two"})
    assert second.status_code == 200 and "set-cookie" not in second.headers
    assert "cookie" not in upstream.chat_requests()[-1].headers
    httpx.get(gateway.v1 + "/models")
    assert "cookie" not in upstream.received[-1].headers


def test_a_callers_own_cookie_header_is_forwarded(upstream: FakeUpstream, gateway: Gateway) -> None:
    httpx.get(gateway.v1 + "/models", headers={"Cookie": "mine=1"})
    assert upstream.received[-1].headers["cookie"] == "mine=1"


def test_upstream_response_headers_come_back_with_a_request_id(upstream: FakeUpstream, gateway: Gateway) -> None:
    for response in (
        httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}),
        httpx.get(gateway.v1 + "/models"),
    ):
        assert response.headers["x-upstream"] == "fake"
        assert len(response.headers["x-memory-request-id"]) >= 16
    streamed = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES, "stream": True})
    assert streamed.headers["cache-control"] == "no-cache"
    assert len(streamed.headers["x-memory-request-id"]) >= 16
    ids = {httpx.get(gateway.v1 + "/models").headers["x-memory-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_passthrough_reply_keeps_the_upstream_content_length(upstream: FakeUpstream, gateway: Gateway) -> None:
    want = httpx.get(upstream.url + "/models")
    got = httpx.get(gateway.v1 + "/models")
    assert got.headers["content-length"] == want.headers["content-length"] == str(len(got.content))
    assert got.content == want.content


@pytest.mark.parametrize("setting", [{"loop": "asyncio"}, {"http": "h11"}, {"upstream_transport": "httpx"}], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_the_measured_alternatives_proxy_just_as_well(setting: dict[str, str], upstream: FakeUpstream, start_gateway) -> None:
    # bench/bench_proxy.py chose the defaults; the alternatives stay settings, so they must work too.
    gw = start_gateway(**setting)
    direct, proxied = clients(upstream, gw)
    want = [c.model_dump() for c in direct.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)]
    assert [c.model_dump() for c in proxied.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)] == want
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    assert raw_stream(gw.v1, body)[2] == raw_stream(upstream.url, body)[2]
    with pytest.raises(openai.RateLimitError):
        proxied.chat.completions.create(model="fake-error-429", messages=MESSAGES)
