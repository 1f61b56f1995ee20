"""A chat answer with memory on is complete for the client only once its extraction job is committed:
the gateway holds back the last byte (JSON) or the closing chunk (SSE) until SQLite has the job."""

from __future__ import annotations

import json
import socket
import sqlite3
import time

import pytest

from .harness import Gateway

HOLD = 1.5  # seconds the test keeps SQLite's write lock


def request(port: int, stream: bool) -> socket.socket:
    body = json.dumps({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "My favourite river is the Loire."}]}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer sk-commit\r\n"
                 b"X-Memory-User-Id: river\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def read_for(sock: socket.socket, seconds: float) -> bytes:
    """Whatever arrives within `seconds` (or until the server closes)."""
    got = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            break
        if not piece:
            break
        got += piece
    return got


def complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return body.endswith(b"0\r\n\r\n")  # chunked: the closing chunk


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_client_holds_the_whole_answer_only_once_its_job_is_committed(gateway: Gateway, stream: bool) -> None:
    gw = gateway  # one gateway for both variants: each counts only its own job
    enqueued = gw.metric("memgate_extraction_jobs_total", outcome="enqueued")
    lock = sqlite3.connect(gw.data_dir / "memgate.sqlite3", isolation_level=None, timeout=10)
    lock.execute("BEGIN IMMEDIATE")  # SQLite's write lock: the gateway's job commit waits for it
    sock = request(gw.port, stream)
    try:
        early = read_for(sock, HOLD)
        assert early.startswith(b"HTTP/1.1 200") and b"Loire" in early  # the answer is on its way...
        assert not complete(early), early[-80:]  # ...but not complete while the job is not committed
    finally:
        lock.execute("COMMIT")
        lock.close()
    raw = early + read_for(sock, 10)
    sock.close()
    assert complete(raw)
    assert gw.metric("memgate_extraction_jobs_total", outcome="enqueued") == enqueued + 1
