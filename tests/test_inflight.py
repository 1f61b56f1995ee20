from __future__ import annotations

import time

import httpx

from .harness import Gateway


def wait_for_metric(gw: Gateway, name: str, value: float, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while (current := gw.metric(name)) != value and time.monotonic() < deadline:
        time.sleep(0.02)
    return current


def test_in_flight_counts_a_streamed_request_until_its_last_byte(gateway: Gateway) -> None:
    # A scrape of /metrics is not proxy traffic: an idle gateway reads 0, not 1.
    assert gateway.metric("memgate_requests_in_flight") == 0
    body = {"model": "fake-drip", "stream": True, "messages": [{"role": "user", "content": "count slowly"}]}
    with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body, headers={"X-Fake-Delay": "0.02"}, timeout=30) as response:
        chunks = response.iter_raw()
        assert next(chunks)  # headers and a first chunk are out; the body is still streaming
        assert gateway.metric("memgate_requests_in_flight") == 1
        assert sum(len(c) for c in chunks) > 0
    assert wait_for_metric(gateway, "memgate_requests_in_flight", 0) == 0


def test_in_flight_returns_to_zero_after_upstream_errors(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": "hi"}]
    for model in ("fake-error-500", "fake-hangup"):
        response = httpx.post(gateway.v1 + "/chat/completions", json={"model": model, "messages": messages}, timeout=30)
        assert response.status_code in (500, 502)
    assert wait_for_metric(gateway, "memgate_requests_in_flight", 0) == 0
