"""Slow and vanishing clients: they cost a socket each, never a worker, and leak no upstream connection."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

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


def stalled_upload(port: int, path: bytes, declared: int, sent: bytes = b"0123456789") -> socket.socket:
    """A client that sends the headers and the first bytes of an upload, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s" % (path, declared, sent))
    return sock


def answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of a response with a Content-Length."""
    raw = b""
    while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < int(raw.lower().split(b"content-length:")[1].split(b"\r\n")[0]):
        piece = sock.recv(65536)
        assert piece, raw
        raw += piece
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


def in_flight_reaches(gw: Gateway, count: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gw.metric("memgate_requests_in_flight") >= count:
            return True
        time.sleep(0.02)
    return False


def test_stalled_uploads_never_starve_other_requests_of_upstream_connections(start_gateway) -> None:
    # 3 upstream connections; 6 uploads of 1 MB (read whole before going upstream) and 4 of 64 MiB
    # (over --max-body-bytes: streamed, on at most a quarter of the pool) all stall, for longer than the test.
    gw = start_gateway(max_connections=3, pool_timeout=2, client_body_timeout=60)
    stalled = [stalled_upload(gw.port, b"/v1/files", 1_000_000) for _ in range(6)]
    stalled += [stalled_upload(gw.port, b"/v1/files", 64 << 20) for _ in range(4)]
    try:
        assert in_flight_reaches(gw, len(stalled))
        started = time.monotonic()
        for _ in range(10):
            response = httpx.post(gw.v1 + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "still there?"}]}, timeout=10)
            assert response.status_code == 200, response.text
            assert httpx.get(gw.v1 + "/models", timeout=10).status_code == 200
        assert time.monotonic() - started < 10
        # One large upload holds the one upload slot of a 3-connection pool; the others waited a pool timeout for it.
        answered = []
        for sock in stalled[6:]:
            sock.settimeout(5)
            try:
                answered.append(answer(sock))
            except TimeoutError:
                pass
        assert len(answered) == 3 and all(head.startswith(b"HTTP/1.1 503") and json.loads(body)["error"]["code"] == "uploads_busy" for head, body in answered), answered
    finally:
        for sock in stalled:
            sock.close()


def test_a_client_stalling_mid_body_gets_a_408_and_its_upstream_request_is_cancelled(start_gateway, upstream: FakeUpstream) -> None:
    gw = start_gateway(client_body_timeout=1, max_body_bytes=64 * 1024)
    cancelled = upstream.incomplete_bodies
    received = len(upstream.received)
    cases = [(b"/v1/files", 60_000, b"x" * 10), (b"/v1/files", 1_000_000, b"x" * 200_000), (b"/v1/chat/completions", 1000, b'{"mo')]
    for path, declared, sent in cases:  # read whole first; streamed upstream (over the limit); a chat
        sock = stalled_upload(gw.port, path, declared, sent)
        started = time.monotonic()
        head, body = answer(sock)
        closed = sock.recv(1) == b""
        sock.close()
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower() and closed, head
        assert json.loads(body)["error"]["code"] == "client_body_timeout"
        assert 0.9 < time.monotonic() - started < 5
    # Only the streamed upload reached the upstream, and its request was cut off there, not left open.
    assert upstream.wait_for(lambda: upstream.incomplete_bodies == cancelled + 1, timeout=5)
    assert len(upstream.received) == received
    assert gw.metric("memgate_requests_total", route="passthrough", status="408") == 2
    assert gw.metric("memgate_requests_total", route="chat", status="408") == 1
    # A slow client that keeps sending within the timeout is served, streamed or not.
    def trickle(pieces: int):
        for _ in range(pieces):
            time.sleep(0.3)
            yield b"y" * 30_000
    for pieces in (2, 4):
        response = httpx.post(gw.v1 + "/files", content=trickle(pieces), timeout=10)
        assert response.status_code == 200 and response.json()["body_len"] == pieces * 30_000


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_connection_that_never_finishes_its_headers_is_closed(start_gateway, http: str) -> None:
    gw = start_gateway(http=http, client_header_timeout=1)
    silent = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    partial = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    partial.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    kept = socket.create_connection(("127.0.0.1", gw.port), timeout=10)  # a second request's head, after a first one
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
    try:
        started = time.monotonic()
        assert silent.recv(1024) == b"" and partial.recv(1024) == b""  # closed by the gateway
        assert 0.9 < time.monotonic() - started < 5
        first = kept.recv(65536)
        assert first.startswith(b"HTTP/1.1 200") and kept.recv(1024) == b""
        assert time.monotonic() - started < 5
        # A response slower than the header timeout is not cut, and the connection serves a next request.
        with httpx.Client(timeout=10) as client:
            slow = client.post(gw.v1 + "/chat/completions", headers={"X-Fake-Delay": "2"}, json={"model": "fake-slow", "messages": [{"role": "user", "content": "hi"}]})
            assert slow.status_code == 200
            assert client.get(gw.v1 + "/models").status_code == 200
    finally:
        silent.close()
        partial.close()
        kept.close()
