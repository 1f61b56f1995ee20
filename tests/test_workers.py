"""`memgate serve --workers 2`: two processes on one port, each a replica with its own queue on the
shared store; /metrics sums both, the admin queue routes cover both queues, a dead worker comes back."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from .extraction_helpers import flush, memories
from .fake_upstream import FakeUpstream
from .harness import Gateway

USERS = 24


def workers_of(gw: Gateway) -> list[int]:
    assert gw.proc is not None
    return [int(pid) for pid in Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children").read_text().split()]


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(upstream.url, tmp_path_factory.mktemp("workers") / "data", workers=2, tenant_mode="none", hygiene_interval=0).start(timeout=240)  # two cold starts at once on 2 cores
    yield gateway
    gateway.stop()


def post(gw: Gateway, i: int) -> httpx.Response:
    # A new connection per request: the kernel hands each to whichever worker accepts first.
    payload = {"model": "m", "messages": [{"role": "user", "content": f"My locker number is {i}."}]}
    return httpx.post(gw.v1 + "/chat/completions", json=payload, headers={"Authorization": "Bearer sk-w", "X-Memory-User-Id": f"w{i}"}, timeout=30)


def test_two_workers_serve_the_port_and_metrics_and_the_queue_cover_both(gw: Gateway) -> None:
    assert len(workers_of(gw)) == 2
    assert "worker failed" not in gw.log()  # both started at once on a new store: neither lost the race for its indexes
    before = gw.metric("memgate_requests_total", route="chat", status="200")
    with ThreadPoolExecutor(8) as pool:
        assert [r.status_code for r in pool.map(lambda i: post(gw, i), range(USERS))] == [200] * USERS
    assert gw.metric("memgate_requests_total", route="chat", status="200") - before == USERS  # every worker's requests, in one scrape
    # Each worker opens its own queue file as it starts; the gateway was ready when one of them was.
    deadline = time.monotonic() + 120
    while not all(Path(gw.data_dir, *sub, "memgate.sqlite3").exists() for sub in ((), ("worker-1",))):
        assert time.monotonic() < deadline, "a worker has no queue file of its own"
        time.sleep(0.05)
    flush(gw)  # one call waits for both workers' queues
    assert [[m["text"] for m in memories(gw, f"w{i}")] for i in range(USERS)] == [[f"User's locker number is {i}"] for i in range(USERS)]
    with gw.admin() as admin:
        state = admin.get("/queue").json()
    assert state["depth"] == 0 and state["other_workers"]["depth"] == 0


def test_a_worker_killed_with_sigkill_is_started_again_and_the_port_keeps_serving(gw: Gateway) -> None:
    first, second = workers_of(gw)
    os.kill(first, signal.SIGKILL)
    assert post(gw, 1000).status_code == 200  # the other worker serves meanwhile
    deadline = time.monotonic() + 60
    while not (len(pids := workers_of(gw)) == 2 and first not in pids):
        assert time.monotonic() < deadline, "the killed worker was not started again"
        time.sleep(0.05)
    assert second in pids
    assert [post(gw, 2000 + i).status_code for i in range(8)] == [200] * 8
