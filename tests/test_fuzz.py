"""Hostile and malformed input: whatever a client sends, the gateway answers OpenAI-shaped 4xx
(or the upstream's own answer), never 500, and keeps serving."""

from __future__ import annotations

import base64
import json
import socket
from typing import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.identity import key_fingerprint

from .fake_upstream import FakeUpstream
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


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
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
    response = httpx.post(gateway.v1 + "/chat/completions", content=body, headers={"Authorization": f"Bearer {FUZZ_KEY}", "X-Memory-User-Id": "fuzz"}, timeout=30)
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


# -- the admin API ---------------------------------------------------------------------------------

FUZZ_KEY = "sk-fuzz-admin"
FUZZ_USER = "fuzz-owner"


def fuzz_path(user: str = FUZZ_USER) -> str:
    return f"/tenants/{key_fingerprint(FUZZ_KEY)}/users/{user}/memories"


@pytest.fixture(scope="module")
def owned(gateway: Gateway) -> dict[str, str]:
    """A user with two memories, so refused requests can be checked to change nothing."""
    with gateway.admin() as admin:
        ids = [admin.post(fuzz_path(), json={"text": text}).json()["id"] for text in ("I keep bees", "My bike is blue")]
    return {"first": ids[0], "second": ids[1]}


@pytest.fixture(scope="module")
def admin(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client


def listing(gateway: Gateway) -> list[tuple[str, str]]:
    with gateway.admin() as admin:
        response = admin.get(fuzz_path(), params={"limit": 500})
    assert response.status_code == 200, response.text
    return sorted((m["id"], m["text"]) for m in response.json()["memories"])


def assert_admin_answer(response: httpx.Response) -> None:
    """Never a 500; every error OpenAI-shaped."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


@pytest.mark.parametrize(
    "method, suffix, content",
    [
        ("POST", "", b"[" * 100_000),
        ("POST", "", b'{"text": "I like kites", "confidence": 1' + b"0" * 400 + b"}"),
        ("POST", "", b'{"text": "I like \\ud800 kites"}'),
        ("POST", "/search", b'{"query": "kites \\udc00"}'),
        ("POST", "/search", b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("PATCH", "/{first}", b'{"text": "I like \\ud800 kites"}'),
        ("PATCH", "/{first}", b'{"confidence": -1' + b"0" * 400 + b"}"),
        ("PATCH", "/{first}", b"{" * 100_000),
    ],
    ids=["deep-array", "huge-confidence", "lone-surrogate-add", "lone-surrogate-search", "deep-query", "lone-surrogate-patch", "huge-negative-confidence", "deep-object"],
)
def test_hostile_admin_bodies_are_a_400_and_change_nothing(gateway: Gateway, owned: dict[str, str], method: str, suffix: str, content: bytes) -> None:
    before = listing(gateway)
    with gateway.admin() as admin:
        response = admin.request(method, fuzz_path() + suffix.format(**owned), content=content, headers={"Content-Type": "application/json"})
    assert_admin_answer(response)
    assert response.status_code == 400
    assert listing(gateway) == before


def test_an_admin_body_over_the_limit_is_a_413_without_reading_it_all(gateway: Gateway, owned: dict[str, str]) -> None:
    before = listing(gateway)
    with gateway.admin() as admin:
        response = admin.post(fuzz_path(), content=b'{"text": "' + b"x" * (20 * 1024 * 1024) + b'"}', headers={"Content-Type": "application/json"})
    assert_admin_answer(response)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert listing(gateway) == before


admin_bodies = st.one_of(
    st.binary(max_size=256),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {}, optional={"text": json_values | st.text(max_size=5000), "kind": json_values | st.sampled_from(["fact", "note", "poem"]),
                      "confidence": json_values | st.integers() | st.floats(), "pinned": json_values, "agent_id": json_values | st.text(max_size=140),
                      "query": json_values | st.text(max_size=100), "top_k": json_values | st.integers()},
    ).map(lambda v: json.dumps(v).encode()),
)
path_ids = st.one_of(
    st.text(max_size=140),
    st.sampled_from(["x' OR '1'='1", "..", "%2e%2e", "a/b", "u" * 129, "", " ", "null", "FUZZ-OWNER", FUZZ_USER + ".", "%00", "a%2Fb"]),
).map(lambda s: quote(s, safe="'@:+").replace(".", "%2E"))
# The server decodes these back to exactly the generated characters. Dots are encoded too: httpx resolves
# a literal `..` segment client-side, so DELETE .../memories/.. would really be DELETE .../users/{u} (forget).
query_params = st.fixed_dictionaries(
    {}, optional={"limit": st.text(max_size=12) | st.integers().map(str), "cursor": st.text(max_size=60) | st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                  "kind": st.text(max_size=10), "timeout": st.text(max_size=10)},
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(["add", "search", "list", "get", "patch", "delete", "history", "users", "flush"]),
    body=admin_bodies, user=path_ids, memory_id=path_ids, params=query_params, mine=st.booleans(),
)
def test_any_admin_request_gets_an_openai_shaped_answer_that_is_not_a_500(
    admin: httpx.Client, owned: dict[str, str], route: str, body: bytes, user: str, memory_id: str, params: dict[str, str], mine: bool
) -> None:
    user = FUZZ_USER if mine else user  # half the cases aim at a real user, so bodies are checked past the lookup
    tenant = key_fingerprint(FUZZ_KEY)
    paths = {
        "add": ("POST", f"/tenants/{tenant}/users/{user}/memories"),
        "search": ("POST", f"/tenants/{tenant}/users/{user}/memories/search"),
        "list": ("GET", f"/tenants/{tenant}/users/{user}/memories"),
        "get": ("GET", f"/tenants/{tenant}/users/{user}/memories/{memory_id}"),
        "patch": ("PATCH", f"/tenants/{tenant}/users/{user}/memories/{memory_id}"),
        "delete": ("DELETE", f"/tenants/{tenant}/users/{user}/memories/{memory_id}"),
        "history": ("GET", f"/tenants/{tenant}/users/{user}/memories/{memory_id}/history"),
        "users": ("GET", f"/tenants/{user}/users"),
        "flush": ("POST", "/queue/flush"),
    }
    method, path = paths[route]
    response = admin.request(method, path, content=body if method in ("POST", "PATCH") else None, params=params,
                             headers={"Content-Type": "application/json"})
    assert_admin_answer(response)
    if route in ("add", "patch", "delete") and response.status_code >= 400:
        # A refused write changed nothing: the owner's memories are all still listed.
        page = admin.get(fuzz_path(), params={"limit": 500})
        assert page.status_code == 200 and set(owned.values()) <= {m["id"] for m in page.json()["memories"]}


def test_a_dot_dot_memory_id_reaching_the_server_deletes_nothing(gateway: Gateway, owned: dict[str, str]) -> None:
    before = listing(gateway)
    with gateway.admin() as admin:
        response = admin.delete(fuzz_path() + "/%2E%2E")  # encoded, so no client resolves it into the forget route
    assert_admin_answer(response)
    assert response.status_code == 400 and response.json()["error"]["param"] == "memory id"
    assert listing(gateway) == before


def test_the_admin_api_still_lists_and_counts_after_the_fuzzing(gateway: Gateway, owned: dict[str, str]) -> None:
    ids = {m[0] for m in listing(gateway)}
    assert set(owned.values()) <= ids
    assert gateway.metric("memgate_requests_total", route="admin", status="500") == 0


# -- the proxy with memory on: hostile content reaches recall, injection and the queue -------------------


def memory_chat(gateway: Gateway, content: bytes, user: str = FUZZ_USER) -> httpx.Response:
    headers = {"Authorization": f"Bearer {FUZZ_KEY}", "X-Memory-User-Id": user, "Content-Type": "application/json"}
    return httpx.post(gateway.v1 + "/chat/completions", content=content, headers=headers, timeout=60)


def test_a_lone_surrogate_in_the_prompt_is_forwarded_with_memories_injected(gateway: Gateway, upstream: FakeUpstream, owned: dict[str, str]) -> None:
    body = b'{"model": "m", "messages": [{"role": "system", "content": "Be kind \\ud800."}, {"role": "user", "content": "Tell me about my bees"}]}'
    response = memory_chat(gateway, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-memory-status"] == "ok" and int(response.headers["x-memory-injected"]) >= 1
    sent = upstream.chat_requests()[-1]
    assert b"\\ud800" in sent.body  # still the escape the client sent, not invalid UTF-8 on the wire
    assert "I keep bees" in json.loads(sent.body)["messages"][0]["content"]


def test_a_lone_surrogate_in_the_question_still_recalls_and_is_still_learned_from(gateway: Gateway, upstream: FakeUpstream, owned: dict[str, str]) -> None:
    response = memory_chat(gateway, b'{"model": "m", "messages": [{"role": "user", "content": "What about my bees \\ud800?"}]}')
    assert response.status_code == 200
    assert response.headers["x-memory-status"] == "ok" and int(response.headers["x-memory-injected"]) >= 1
    memory_chat(gateway, b'{"model": "m", "messages": [{"role": "user", "content": "My boat is called Sea\\udc00 Wave."}]}', user="fuzz-sailor")
    with gateway.admin() as admin:
        assert admin.post("/queue/flush").json()["done"] is True
        found = admin.get(f"/tenants/{key_fingerprint(FUZZ_KEY)}/users/fuzz-sailor/memories").json()["memories"]
    assert [m["text"] for m in found] == ["User's boat is called Sea\ufffd Wave"]


nested_content = st.recursive(
    st.text(max_size=30) | st.none() | st.integers(),
    lambda children: st.lists(children, max_size=3)
    | st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"]), "text": children}, optional={"image_url": children}),
    max_leaves=20,
)
memory_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool"]), "content": nested_content},
        optional={"name": json_values, "tool_calls": json_values},
    ),
    min_size=1, max_size=6,
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages=memory_messages, extra=st.fixed_dictionaries({}, optional={"stream": st.booleans(), "max_tokens": json_values, "tools": json_values}))
def test_any_message_shape_with_memory_on_is_served_never_a_500(gateway: Gateway, owned: dict[str, str], messages: list, extra: dict) -> None:
    messages = [*messages, {"role": "user", "content": "and my bees?"}]  # so recall always has a query and injects
    response = memory_chat(gateway, json.dumps({"model": "m", "messages": messages, **extra}).encode())
    assert_openai_error_or_upstream(response)
    assert response.status_code != 500
    if response.status_code == 200:  # odd message shapes must not break recall either (it failed open on tool_calls: 1.5)
        assert response.headers["x-memory-status"] == "ok", response.headers


@pytest.mark.parametrize("depth", [100, 900, 990, 998])
def test_deeply_nested_content_with_memory_on_is_served_or_refused_never_a_500(gateway: Gateway, owned: dict[str, str], depth: int) -> None:
    nested = b"[" * depth + b'"x"' + b"]" * depth
    body = b'{"model": "m", "messages": [{"role": "user", "content": ' + nested + b'}, {"role": "user", "content": "my bees?"}]}'
    response = memory_chat(gateway, body)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "invalid_json"


def test_ten_thousand_messages_with_memory_on_are_served_and_learned_from_once(gateway: Gateway, upstream: FakeUpstream, owned: dict[str, str]) -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} about bees"} for i in range(10_000)]
    turns.append({"role": "user", "content": "My hive is called Hive Ten Thousand."})
    # A 1M-token window: the ~100k tokens fit, so all 10,001 messages go upstream (an 8k model's would be trimmed to fit).
    response = memory_chat(gateway, json.dumps({"model": "gpt-4.1", "messages": turns}).encode(), user="fuzz-many")
    assert response.status_code == 200 and response.headers["x-memory-status"] == "ok"
    assert len(upstream.chat_requests()[-1].json()["messages"]) == 10_001
    with gateway.admin() as admin:
        assert admin.post("/queue/flush").json()["done"] is True
        found = admin.get(f"/tenants/{key_fingerprint(FUZZ_KEY)}/users/fuzz-many/memories").json()["memories"]
    assert [m["text"] for m in found] == ["User's hive is called Hive Ten Thousand"]  # only the new turn, not 10k


def test_a_body_just_under_the_default_limit_with_memory_on_is_served_and_one_over_is_a_413(gateway: Gateway, owned: dict[str, str]) -> None:
    limit = 16 * 1024 * 1024
    frame = b'{"model": "m", "messages": [{"role": "user", "content": "%s"}]}'
    under = frame.replace(b"%s", b"bees " * ((limit - len(frame)) // 5))
    assert limit - 8 <= len(under) <= limit
    response = memory_chat(gateway, under)
    # Exactly counting 16 MB of prompt outlasts recall_timeout_ms: memory fails open, the request is served.
    assert response.status_code == 200 and response.headers["x-memory-status"] in ("ok", "timeout")
    over = frame.replace(b"%s", b"b" * (limit - len(frame) + 3))
    response = memory_chat(gateway, over)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Memory-User-Id": "u" * 10_000},
        {"X-Memory-User-Id": FUZZ_USER, "X-Memory-Mode": "read-write\x7f"},
        {"X-Memory-User-Id": FUZZ_USER, "X-Memory-Agent-Id": "a\tb"},
        {"X-Memory-User-Id": FUZZ_USER, "Content-Length": "-1"},
        {"X-Memory-User-Id": FUZZ_USER, "Content-Length": "99999999999999999999999"},
        {"X-Memory-User-Id": FUZZ_USER, "Authorization": "Bearer " + "k" * 8000},
        {"X-Memory-User-Id": "caf\xe9"},
    ],
    ids=["huge-user", "mode-control-char", "agent-tab", "negative-length", "huge-length", "huge-key", "latin1-user"],
)
def test_bad_headers_are_refused_in_openai_shape_or_served(gateway: Gateway, headers: dict[str, str]) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        lines = [b"POST /v1/chat/completions HTTP/1.1", b"Host: x", b"Connection: close", b"Content-Type: application/json"]
        headers = {"Authorization": f"Bearer {FUZZ_KEY}", **headers}  # a real key: memory is on, the headers matter
        lines += [f"{k}: {v}".encode("latin-1") for k, v in headers.items()]
        if "Content-Length" not in headers:
            lines.append(b"Content-Length: %d" % len(body))
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    assert status in (200, 400, 413), reply[:300]
    if status != 200 and payload:
        assert set(json.loads(payload)["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(gateway.url + "/healthz").status_code == 200
