"""Errors: the upstream's pass through untouched; the gateway's own are OpenAI-shaped with the right
status; broken streams end visibly; and the gateway keeps serving after every one of them."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway, free_port

MAX_BODY = 4096
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with a small body limit and a short read timeout, so both are cheap to hit."""
    gw = Gateway(upstream.url, tmp_path_factory.mktemp("gw") / "data", max_body_bytes=MAX_BODY, read_timeout=1.0).start()
    yield gw
    gw.stop()


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


MEMORY_CALLER = {"Authorization": "Bearer sk-errors", "X-Memory-User-Id": "alice"}  # memory on for this caller


def assert_still_serving(gateway: Gateway) -> None:
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}, timeout=10)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"


def chat(gateway: Gateway, content: bytes | None = None, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    if content is None:
        content = json.dumps({"model": "gpt-4o", "messages": MESSAGES, **body}).encode()
    return httpx.post(gateway.v1 + "/chat/completions", content=content, headers={"Content-Type": "application/json", **(headers or {})}, timeout=10)


# -- upstream errors reach the client as they were ----------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_upstream_error_status_and_body_pass_through_unchanged(status: int, upstream: FakeUpstream, gateway: Gateway) -> None:
    body = {"model": f"fake-error-{status}", "messages": MESSAGES}
    want = httpx.post(upstream.url + "/chat/completions", json=body)
    got = httpx.post(gateway.v1 + "/chat/completions", json=body)
    assert (got.status_code, got.content) == (want.status_code, want.content) == (status, want.content)
    assert got.json()["error"]["code"] == f"fake_{status}"


def test_retry_after_passes_through(gateway: Gateway) -> None:
    got = chat(gateway, headers={"X-Fake-Retry-After": "17"}, model="fake-error-429")
    assert got.status_code == 429
    assert got.headers["retry-after"] == "17"


@pytest.mark.parametrize("status, error_class", [(429, openai.RateLimitError), (500, openai.InternalServerError), (400, openai.BadRequestError)])
@pytest.mark.parametrize("stream", [False, True])
def test_sdk_raises_the_same_error_through_the_gateway(status: int, error_class: type, stream: bool, upstream: FakeUpstream, gateway: Gateway) -> None:
    def failure(base_url: str) -> openai.APIStatusError:
        client = openai.OpenAI(base_url=base_url, api_key="sk-errors", max_retries=0)
        with pytest.raises(error_class) as caught:
            client.chat.completions.create(model=f"fake-error-{status}", messages=MESSAGES, stream=stream)
        return caught.value

    want, got = failure(upstream.url), failure(gateway.v1)
    assert (got.status_code, got.body, got.code) == (want.status_code, want.body, want.code)


# -- the gateway's own errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b'{"model": "gpt-4o", "messages": [', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'["a", "list"]', "JSON object"),
        (b'"a string"', "JSON object"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "caf\xe9"}]}', "UTF-8"),
        (b"[" * 3000, "nested"),
    ],
    ids=["truncated", "empty", "list", "string", "latin1", "deep"],
)
def test_bad_json_body_is_a_400_in_openai_shape(content: bytes, fragment: str, upstream: FakeUpstream, gateway: Gateway) -> None:
    before = len(upstream.received)
    error = assert_openai_error(chat(gateway, content), 400, "invalid_json")
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert len(upstream.received) == before  # refused at the door, never forwarded
    assert_still_serving(gateway)


def test_body_over_the_limit_is_a_413(gateway: Gateway) -> None:
    big = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * MAX_BODY}]}).encode()
    assert_openai_error(chat(gateway, big), 413, "request_too_large")
    assert_still_serving(gateway)


def test_chunked_body_over_the_limit_is_a_413(gateway: Gateway) -> None:
    # No Content-Length to check up front: the limit must hold while reading.
    def parts() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}]}'

    response = httpx.post(gateway.v1 + "/chat/completions", content=parts(), timeout=10)
    assert_openai_error(response, 413, "request_too_large")
    assert_still_serving(gateway)


def test_body_just_under_the_limit_is_served(gateway: Gateway) -> None:
    text = "y" * (MAX_BODY - 200)
    response = chat(gateway, json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode())
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers, param",
    [
        ({"X-Memory-User-Id": "has space"}, "X-Memory-User-Id"),
        ({"X-Memory-User-Id": ""}, "X-Memory-User-Id"),
        ({"X-Memory-User-Id": "u" * 129}, "X-Memory-User-Id"),
        ({"X-Memory-User-Id": "../etc/passwd"}, "X-Memory-User-Id"),
        ({"X-Memory-Agent-Id": "agent/one"}, "X-Memory-Agent-Id"),
        ({"X-Memory-Session-Id": "s;drop"}, "X-Memory-Session-Id"),
    ],
    ids=["space", "empty", "too-long", "path", "agent", "session"],
)
def test_invalid_memory_id_header_is_a_400(headers: dict[str, str], param: str, gateway: Gateway) -> None:
    # A real key and a valid user: memory would be on, so the header is refused, not ignored.
    error = assert_openai_error(chat(gateway, headers={**MEMORY_CALLER, **headers}), 400, "invalid_memory_id")
    assert error["param"] == param
    assert_still_serving(gateway)


def test_invalid_memory_mode_is_a_400(gateway: Gateway) -> None:
    error = assert_openai_error(chat(gateway, headers={**MEMORY_CALLER, "X-Memory-Mode": "everything"}), 400, "invalid_memory_mode")
    assert error["param"] == "X-Memory-Mode"
    assert_still_serving(gateway)


@pytest.mark.parametrize("method, path", [("GET", "/nope"), ("POST", "/v2/chat/completions"), ("GET", "/"), ("DELETE", "/admin")])
def test_unknown_path_is_a_404_in_openai_shape(method: str, path: str, gateway: Gateway) -> None:
    error = assert_openai_error(httpx.request(method, gateway.url + path), 404)
    assert error["type"] == "not_found_error"
    assert_still_serving(gateway)


def test_wrong_method_on_a_gateway_route_is_a_405_in_openai_shape(gateway: Gateway) -> None:
    assert_openai_error(httpx.post(gateway.url + "/healthz"), 405)
    assert_still_serving(gateway)


def test_gateway_errors_carry_a_request_id(gateway: Gateway) -> None:
    for response in (chat(gateway, b"{"), httpx.get(gateway.url + "/nope")):
        assert len(response.headers["x-memory-request-id"]) >= 16


def test_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    gw = Gateway(closed, tmp_path / "data").start()
    try:
        assert_openai_error(chat(gw), 502, "upstream_unreachable")
        assert_openai_error(httpx.get(gw.v1 + "/models"), 502, "upstream_unreachable")
        assert_openai_error(chat(gw, stream=True), 502, "upstream_unreachable")
        assert gw.metric("memgate_upstream_errors_total", reason="unreachable") == 3
        assert httpx.get(gw.url + "/healthz").status_code == 200
    finally:
        gw.stop()


def test_upstream_hanging_up_before_answering_is_a_502(gateway: Gateway) -> None:
    assert_openai_error(chat(gateway, model="fake-hangup"), 502, "upstream_unreachable")
    assert_still_serving(gateway)


def test_slow_upstream_is_a_504_after_the_read_timeout(gateway: Gateway) -> None:
    before = gateway.metric("memgate_upstream_errors_total", reason="timeout")
    assert_openai_error(chat(gateway, headers={"X-Fake-Delay": "3"}, model="fake-slow"), 504, "upstream_timeout")
    assert gateway.metric("memgate_upstream_errors_total", reason="timeout") == before + 1
    assert_still_serving(gateway)


def test_slow_passthrough_upstream_is_a_504_too(tmp_path: Path) -> None:
    # A listener that accepts and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        gw = Gateway(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", tmp_path / "data", read_timeout=0.5).start()
        try:
            assert_openai_error(httpx.get(gw.v1 + "/models", timeout=10), 504, "upstream_timeout")
        finally:
            gw.stop()


def test_expect_100_continue_from_the_client_does_not_stall_the_upstream(gateway: Gateway) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert b"HTTP/1.1 200" in reply and b"echo: hi" in reply


# -- streams that break ------------------------------------------------------------------------------


def test_client_disconnect_mid_stream_cancels_the_upstream_request(upstream: FakeUpstream, gateway: Gateway) -> None:
    before = upstream.cancelled_streams
    body = {"model": "fake-drip", "messages": MESSAGES, "stream": True}
    # 50 events 0.1 s apart: without cancellation the upstream would happily finish in 5 s.
    with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body, headers={"X-Fake-Delay": "0.1"}, timeout=10) as response:
        chunks = response.iter_raw()
        assert next(chunks).startswith(b"data: ")
    assert upstream.wait_for(lambda: upstream.cancelled_streams > before, timeout=4.0)
    assert gateway.metric("memgate_requests_total", route="chat", status="499") >= 1  # counted as nginx's 499
    assert_still_serving(gateway)


def test_upstream_reset_mid_stream_truncates_the_stream_visibly(upstream: FakeUpstream, gateway: Gateway) -> None:
    body = {"model": "fake-reset", "messages": MESSAGES, "stream": True}

    def attempt(url: str) -> tuple[bytes, type]:
        received = b""
        started = time.monotonic()
        with pytest.raises(httpx.TransportError) as caught:
            with httpx.stream("POST", url + "/chat/completions", json=body, timeout=10) as response:
                assert response.status_code == 200
                for chunk in response.iter_raw():
                    received += chunk
        assert time.monotonic() - started < 5  # ended, not hung until a timeout
        return received, type(caught.value)

    want, got = attempt(upstream.url), attempt(gateway.v1)
    assert got == want
    assert b"[DONE]" not in got[0] and got[0].count(b"data: ") == 2
    assert gateway.metric("memgate_upstream_errors_total", reason="stream_unreachable") >= 1
    assert_still_serving(gateway)


def test_sdk_sees_a_reset_stream_fail_as_it_would_directly(upstream: FakeUpstream, gateway: Gateway) -> None:
    def outcome(base_url: str) -> tuple[list[str], type]:
        client = openai.OpenAI(base_url=base_url, api_key="sk-errors", max_retries=0)
        seen = []
        with pytest.raises(Exception) as caught:
            for chunk in client.chat.completions.create(model="fake-reset", messages=MESSAGES, stream=True):
                seen.append(chunk.choices[0].delta.content)
        return seen, type(caught.value)

    assert outcome(gateway.v1) == outcome(upstream.url)


def test_malformed_sse_passes_through_as_the_upstream_sent_it(upstream: FakeUpstream, gateway: Gateway) -> None:
    body = {"model": "fake-malformed", "messages": MESSAGES, "stream": True}
    want = httpx.post(upstream.url + "/chat/completions", json=body).content
    got = httpx.post(gateway.v1 + "/chat/completions", json=body).content
    assert got == want and b"data: {not json" in got


@pytest.mark.parametrize("path", [b"/v1/../../admin", b"/v1/files/../../../etc/passwd", b"/v1/%2e%2e/secret", b"/v1/files/..%2F..%2Fx", b"/v1/./models"])
def test_dot_segments_cannot_leave_the_upstreams_v1(path: bytes, upstream: FakeUpstream, gateway: Gateway) -> None:
    before = len(upstream.received)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") or head.startswith(b"HTTP/1.1 404"), reply
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}
    assert len(upstream.received) == before


def test_upstream_stalling_mid_stream_past_the_read_timeout_cuts_the_stream(gateway: Gateway) -> None:
    before = gateway.metric("memgate_upstream_errors_total", reason="stream_timeout")
    body = {"model": "fake-drip", "messages": MESSAGES, "stream": True}
    received = b""
    with pytest.raises(httpx.TransportError):
        with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body, headers={"X-Fake-Delay": "3"}, timeout=10) as response:
            for chunk in response.iter_raw():
                received += chunk
    assert received.count(b"data: ") == 1  # the first event, then 3 s of silence against a 1 s read timeout
    assert gateway.metric("memgate_upstream_errors_total", reason="stream_timeout") == before + 1
    assert_still_serving(gateway)
