"""Slow and vanishing clients: they cost a socket each, never a worker, and leak no upstream connection."""

from __future__ import annotations

import socket
import time

import httpx

from .fake_upstream import FakeUpstream
from .harness import Gateway


def test_slowloris_connections_do_not_stop_other_clients(gateway: Gateway) -> None:
    stalled = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"mo")
        stalled.append(sock)
    try:
        started = time.monotonic()
        for _ in range(20):
            response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "still there?"}]}, timeout=10)
            assert response.status_code == 200
        assert time.monotonic() - started < 10
    finally:
        for sock in stalled:
            sock.close()


def test_clients_that_vanish_mid_stream_release_their_upstream_connections(gateway: Gateway, upstream: FakeUpstream) -> None:
    baseline_cancelled = upstream.cancelled_streams
    for _ in range(10):
        with httpx.stream(
            "POST", gateway.v1 + "/chat/completions", timeout=10, headers={"X-Fake-Delay": "0.05"},
            json={"model": "fake-drip", "stream": True, "messages": [{"role": "user", "content": "go"}]},
        ) as response:
            assert response.status_code == 200
            next(response.iter_raw())  # one chunk, then hang up
    # Each abandoned stream must be cancelled upstream, not drained to the end (50 chunks x 50 ms).
    assert upstream.wait_for(lambda: upstream.cancelled_streams >= baseline_cancelled + 10, timeout=15)
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_a_client_that_stops_reading_does_not_block_others(gateway: Gateway) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    body = b'{"model": "fake-drip", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Fake-Delay: 0.01\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert response.status_code == 200
    finally:
        sock.close()
