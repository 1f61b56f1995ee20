"""Hostile and malformed input: whatever a client sends, the gateway answers OpenAI-shaped 4xx
(or the upstream's own answer), never 500, and keeps serving."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .harness import Gateway

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "x"]), "content": json_values}),
    max_size=4,
)
chat_bodies = st.fixed_dictionaries(
    {"model": st.text(max_size=20) | json_values, "messages": messages | json_values},
    optional={"user": json_values, "stream": st.booleans() | json_values, "max_tokens": json_values},
)
bodies = st.one_of(
    st.binary(max_size=512),
    json_values.map(lambda v: json.dumps(v).encode()),
    chat_bodies.map(lambda v: json.dumps(v).encode()),
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200).map(str.strip)
memory_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Memory-User-Id": header_text,
        "X-Memory-Agent-Id": header_text,
        "X-Memory-Session-Id": header_text,
        "X-Memory-Mode": header_text | st.sampled_from(["off", "read", "write", "read-write"]),
    },
)


def assert_openai_error_or_upstream(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code in (502, 504), response.text
    if response.status_code >= 400 and response.headers.get("x-upstream") != "fake":
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, headers=memory_headers)
def test_any_chat_body_and_memory_headers_get_an_answer_that_is_not_a_500(gateway: Gateway, body: bytes, headers: dict[str, str]) -> None:
    response = httpx.post(gateway.v1 + "/chat/completions", content=body, headers={"Authorization": "Bearer sk-fuzz", **headers}, timeout=30)
    assert_openai_error_or_upstream(response)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe\xfa", b"", b"null", b'"string"', b"12", b'{"messages": "' + b"x" * 1000 + b'"}'],
    ids=["deep-array", "deep-object", "invalid-utf8", "empty", "null", "string", "number", "wrong-type"],
)
def test_pathological_bodies_are_refused_with_400(gateway: Gateway, body: bytes) -> None:
    response = httpx.post(gateway.v1 + "/chat/completions", content=body, headers={"X-Memory-User-Id": "fuzz"}, timeout=30)
    if body.startswith(b'{"messages"'):
        assert response.status_code in (200, 400)
    else:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"


def test_garbage_on_the_socket_does_not_stop_the_gateway(gateway: Gateway) -> None:
    for garbage in (b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            sock.sendall(garbage)
            sock.settimeout(5)
            try:
                sock.recv(4096)
            except (TimeoutError, ConnectionResetError):
                pass
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_the_gateway_still_serves_after_the_fuzzing(gateway: Gateway) -> None:
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert gateway.metric("memgate_requests_total", route="chat", status="500") == 0
