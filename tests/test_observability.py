"""Health, readiness, Prometheus metrics and JSON logs, as an operator sees them over HTTP."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .harness import Gateway

KEY = "sk-live-observability-9b8c7d6e5f4a"
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(gateway: Gateway, **body: object) -> httpx.Response:
    return httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES, **body}, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)


def log_entries(gateway: Gateway) -> list[dict]:
    return [json.loads(line) for line in gateway.log().splitlines() if line.strip()]


def wait_for_log(gateway: Gateway, request_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in log_entries(gateway):
            if entry.get("request_id") == request_id:
                return entry
        time.sleep(0.02)
    raise AssertionError(f"no log line for request {request_id}:\n{gateway.log()[-2000:]}")


def test_healthz_says_alive(gateway: Gateway) -> None:
    response = httpx.get(gateway.url + "/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_says_ready(gateway: Gateway) -> None:
    response = httpx.get(gateway.url + "/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_metrics_are_in_prometheus_text_format(gateway: Gateway) -> None:
    chat(gateway)
    response = httpx.get(gateway.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in ("memgate_requests_total", "memgate_request_duration_seconds", "memgate_upstream_duration_seconds",
                 "memgate_overhead_seconds", "memgate_upstream_errors_total", "memgate_stream_first_byte_seconds"):
        assert f"# TYPE {name} " in response.text, name


def test_a_chat_request_is_counted_by_route_and_status(gateway: Gateway) -> None:
    before = gateway.metric("memgate_requests_total", route="chat", status="200")
    errors_before = gateway.metric("memgate_requests_total", route="chat", status="429")
    chat(gateway)
    chat(gateway, model="fake-error-429")
    assert gateway.metric("memgate_requests_total", route="chat", status="200") == before + 1
    assert gateway.metric("memgate_requests_total", route="chat", status="429") == errors_before + 1


def test_durations_are_observed_per_route(gateway: Gateway) -> None:
    names = ("memgate_request_duration_seconds_count", "memgate_upstream_duration_seconds_count", "memgate_overhead_seconds_count")
    before = [gateway.metric(name, route="chat") for name in names]
    chat(gateway)
    assert [gateway.metric(name, route="chat") for name in names] == [b + 1 for b in before]
    passthrough_before = gateway.metric("memgate_request_duration_seconds_count", route="passthrough")
    httpx.get(gateway.v1 + "/models")
    assert gateway.metric("memgate_request_duration_seconds_count", route="passthrough") == passthrough_before + 1


def test_gateway_overhead_is_less_than_the_whole_request(gateway: Gateway) -> None:
    chat(gateway, model="fake-slow")  # 2 s upstream: the gateway's share must be a sliver of it
    overhead = gateway.metric("memgate_overhead_seconds_sum", route="chat")
    total = gateway.metric("memgate_request_duration_seconds_sum", route="chat")
    assert 0 < overhead < total / 2


def test_stream_first_byte_is_observed(gateway: Gateway) -> None:
    before = gateway.metric("memgate_stream_first_byte_seconds_count")
    response = chat(gateway, stream=True)
    assert response.content.endswith(b"data: [DONE]\n\n")
    deadline = time.monotonic() + 5
    while gateway.metric("memgate_stream_first_byte_seconds_count") == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gateway.metric("memgate_stream_first_byte_seconds_count") == before + 1


def test_every_log_line_is_json_with_a_level_and_message(gateway: Gateway) -> None:
    chat(gateway)
    with pytest.raises(httpx.TransportError):
        with httpx.stream("POST", gateway.v1 + "/chat/completions", json={"model": "fake-reset", "messages": MESSAGES, "stream": True}) as response:
            for _ in response.iter_raw():
                pass
    httpx.post(gateway.v1 + "/chat/completions", content=b"{broken")
    entries = log_entries(gateway)  # json.loads fails on any line that is not JSON
    assert entries
    assert all({"ts", "level", "msg"} <= set(entry) for entry in entries)


@pytest.mark.parametrize("kind", ["json", "stream", "error", "passthrough"])
def test_the_response_request_id_is_in_the_log_line(kind: str, gateway: Gateway) -> None:
    if kind == "passthrough":
        response = httpx.get(gateway.v1 + "/models")
    else:
        response = chat(gateway, stream=kind == "stream", model="fake-error-500" if kind == "error" else "gpt-4o")
    entry = wait_for_log(gateway, response.headers["x-memory-request-id"])
    assert entry["status"] == response.status_code
    assert entry["route"] == ("passthrough" if kind == "passthrough" else "chat")


def test_api_keys_never_reach_logs_or_metrics(gateway: Gateway) -> None:
    chat(gateway)
    chat(gateway, stream=True)
    chat(gateway, model="fake-error-401")
    httpx.post(gateway.v1 + "/chat/completions", content=b'{"api_key": "' + KEY.encode() + b'"', headers={"Authorization": f"Bearer {KEY}"})
    httpx.get(gateway.v1 + "/models", headers={"Authorization": f"Bearer {KEY}"})
    wait_for_log(gateway, chat(gateway).headers["x-memory-request-id"])
    assert KEY not in gateway.log()
    assert KEY[3:] not in gateway.log()
    assert KEY not in httpx.get(gateway.url + "/metrics").text
