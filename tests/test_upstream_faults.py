"""Upstream faults with memory on: the client gets the upstream's status or a 502/504 in OpenAI shape,
promptly; no extraction job is made from a failed answer; nothing hangs; metrics count each case.
(tests/test_errors.py covers the same faults with memory off, and byte-exact pass-through.)"""

from __future__ import annotations

import socket
import time
from typing import Iterator

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway

READ_TIMEOUT = 1.0
KEY = "sk-faults"
QUESTION = [{"role": "user", "content": "My favourite tree is the rowan."}]  # a fact: a success would make a job


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(upstream.url, tmp_path_factory.mktemp("faults") / "data", read_timeout=READ_TIMEOUT).start()
    yield gateway
    gateway.stop()


class Counts:
    """Metric samples before a request, to compare after it."""

    NAMES = {
        "enqueued": ("memgate_extraction_jobs_total", {"outcome": "enqueued"}),
        "skipped_failed": ("memgate_capture_skipped_total", {"reason": "failed"}),
        "skipped_truncated": ("memgate_capture_skipped_total", {"reason": "truncated"}),
        "skipped_capture_error": ("memgate_capture_skipped_total", {"reason": "capture_error"}),
        "timeout": ("memgate_upstream_errors_total", {"reason": "timeout"}),
        "unreachable": ("memgate_upstream_errors_total", {"reason": "unreachable"}),
        "stream_timeout": ("memgate_upstream_errors_total", {"reason": "stream_timeout"}),
        "stream_unreachable": ("memgate_upstream_errors_total", {"reason": "stream_unreachable"}),
    }

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.before = self.read()

    def read(self) -> dict[str, float]:
        return {key: self.gw.metric(name, **labels) for key, (name, labels) in self.NAMES.items()}

    def delta(self) -> dict[str, float]:
        after = self.read()
        return {key: after[key] - self.before[key] for key in after if after[key] != self.before[key]}


def send(gw: Gateway, model: str, stream: bool, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str], float, Exception | None]:
    """One chat request with memory on; (status, body, headers, seconds, transport error if the stream broke)."""
    started = time.monotonic()
    body = b""
    status, got, broken = 0, {}, None
    try:
        with httpx.stream("POST", gw.v1 + "/chat/completions", json={"model": model, "messages": QUESTION, "stream": stream}, timeout=15,
                          headers={"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": "faulty", **(headers or {})}) as response:
            status, got = response.status_code, dict(response.headers)
            for chunk in response.iter_raw():
                body += chunk
    except httpx.TransportError as exc:
        broken = exc
    return status, body, got, time.monotonic() - started, broken


def assert_no_job(gw: Gateway, counts: Counts) -> None:
    with gw.admin() as admin:
        state = admin.post("/queue/flush").json()
    assert state["depth"] == 0
    assert "enqueued" not in counts.delta()


def assert_openai_error(body: bytes, status: int, code: str) -> None:
    import json

    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, (status, error)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status, retry_after", [(429, "7"), (429, None), (500, None), (503, "30"), (503, None)])
def test_an_upstream_error_status_reaches_the_client_and_makes_no_job(gw: Gateway, status: int, retry_after: str | None, stream: bool) -> None:
    counts = Counts(gw)
    got, body, headers, seconds, broken = send(gw, f"fake-error-{status}", stream, {"X-Fake-Retry-After": retry_after} if retry_after else None)
    assert broken is None and got == status and seconds < 5
    assert_openai_error(body, status, f"fake_{status}")
    assert headers.get("retry-after") == retry_after
    assert gw.metric("memgate_requests_total", route="chat", status=str(status)) >= 1
    assert counts.delta() == {"skipped_failed": 1}
    assert_no_job(gw, counts)


def test_an_upstream_timeout_is_a_504_promptly_and_makes_no_job(gw: Gateway) -> None:
    counts = Counts(gw)
    status, body, _, seconds, _ = send(gw, "fake-slow", False, {"X-Fake-Delay": "4"})
    assert status == 504 and seconds < READ_TIMEOUT + 2
    assert_openai_error(body, 504, "upstream_timeout")
    assert counts.delta() == {"timeout": 1}
    assert_no_job(gw, counts)


def test_an_upstream_hanging_up_is_a_502_and_makes_no_job(gw: Gateway) -> None:
    counts = Counts(gw)
    for stream in (False, True):
        status, body, _, seconds, _ = send(gw, "fake-hangup", stream)
        assert status == 502 and seconds < 5
        assert_openai_error(body, 502, "upstream_unreachable")
    assert counts.delta() == {"unreachable": 2}
    assert_no_job(gw, counts)


def test_a_stream_reset_midway_is_cut_visibly_and_makes_no_job(gw: Gateway) -> None:
    counts = Counts(gw)
    status, body, _, seconds, broken = send(gw, "fake-reset", True)
    assert status == 200 and broken is not None and seconds < 5
    assert b"[DONE]" not in body
    # One warning line of our own, not uvicorn's "Exception in ASGI application" traceback.
    assert "upstream broke off mid-response" in gw.log() and "Exception in ASGI application" not in gw.log()
    assert counts.delta() == {"stream_unreachable": 1, "skipped_truncated": 1}
    assert_no_job(gw, counts)


def test_a_stream_stalling_past_the_read_timeout_is_cut_and_makes_no_job(gw: Gateway) -> None:
    counts = Counts(gw)
    status, body, _, seconds, broken = send(gw, "fake-drip", True, {"X-Fake-Delay": "3"})
    assert status == 200 and broken is not None and seconds < READ_TIMEOUT + 2
    assert body.count(b"data: ") == 1
    assert counts.delta() == {"stream_timeout": 1, "skipped_truncated": 1}
    assert_no_job(gw, counts)


def test_malformed_sse_passes_through_and_makes_no_job(gw: Gateway) -> None:
    counts = Counts(gw)
    status, body, _, _, broken = send(gw, "fake-malformed", True)
    assert status == 200 and broken is None and b"data: {not json" in body and b"[DONE]" in body
    assert counts.delta() == {"skipped_truncated": 1}
    assert_no_job(gw, counts)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_slow_answer_within_the_timeout_is_served_and_learned_from(gw: Gateway, stream: bool) -> None:
    # The control case: the same question answered (slowly, or a trickle) makes exactly one job.
    counts = Counts(gw)
    model, delay = ("fake-drip", "0.01") if stream else ("fake-slow", str(READ_TIMEOUT / 2))
    status, body, headers, _, broken = send(gw, model, stream, {"X-Fake-Delay": delay})
    assert status == 200 and broken is None and headers["x-memory-status"] == "ok"
    assert counts.delta() == {"enqueued": 1}
    with gw.admin() as admin:
        assert admin.post("/queue/flush").json()["depth"] == 0


def test_the_gateway_serves_normally_after_every_fault(gw: Gateway) -> None:
    status, body, headers, _, _ = send(gw, "gpt-4o", False)
    assert status == 200 and b"echo: My favourite tree" in body and headers["x-memory-status"] == "ok"
    # The only 500s counted are the upstream's own two (fake-error-500, json and stream): none of the gateway's.
    assert gw.metric("memgate_requests_total", route="chat", status="500") == 2
    # No traceback at all: streams deliberately broken off (so the client sees the truncation) log one warning each.
    assert "Traceback" not in gw.log()
    assert sum("upstream broke off mid-response" in line for line in gw.log().splitlines()) == 2
    assert gw.metric("memgate_requests_in_flight") <= 1


@pytest.fixture
def deaf_upstream() -> Iterator[str]:
    """An upstream that accepts connections and never reads a byte: a large request body stalls."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted connections
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    server.close()


def test_an_upstream_that_stops_reading_the_request_is_a_504_after_the_write_timeout(deaf_upstream: str, tmp_path) -> None:
    gw = Gateway(deaf_upstream, tmp_path / "data", write_timeout=1.0, read_timeout=30.0).start()
    try:
        big = "x" * (8 << 20)  # far more than the socket buffers take
        requests = [
            ("chat", lambda: httpx.post(gw.v1 + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": big}]}, timeout=20)),
            ("upload", lambda: httpx.post(gw.v1 + "/files", content=big.encode(), timeout=20)),
        ]
        for route, call in requests:
            started = time.monotonic()
            response = call()
            assert response.status_code == 504 and time.monotonic() - started < 10, (route, response.status_code, response.text, time.monotonic() - started)
            assert_openai_error(response.content, 504, "upstream_timeout")
        assert gw.metric("memgate_upstream_errors_total", reason="timeout") == 2
    finally:
        gw.stop()


def test_a_stream_the_capture_cannot_read_reaches_the_client_byte_exact_and_is_counted(gw: Gateway, upstream: FakeUpstream) -> None:
    # Tool-call deltas with "index": null and a string "function" once raised inside the capture and cut the stream.
    counts = Counts(gw)
    body = {"model": "fake-odd-tools", "messages": QUESTION, "stream": True}
    direct = httpx.post(upstream.url + "/chat/completions", json=body, timeout=10).content
    status, got, headers, _, broken = send(gw, "fake-odd-tools", True)
    assert status == 200 and broken is None and headers["x-memory-status"] == "ok"
    assert got == direct and b'"index": null' in got and got.endswith(b"data: [DONE]\n\n")
    assert counts.delta() == {"skipped_capture_error": 1}
    assert_no_job(gw, counts)
    assert "Exception in ASGI application" not in gw.log() and "could not read the streamed reply" in gw.log()
