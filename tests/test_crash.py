"""kill -9 with a backlog: every committed job completes after restart, no memory is written twice."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from .extraction_helpers import KEY, flush, history, memories, queue_state
from .fake_upstream import FakeUpstream

JOBS = 200


def post_fact(gw_v1: str, i: int) -> int:
    payload = {"model": "m", "messages": [{"role": "user", "content": f"My locker number is {i}."}]}
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": f"u{i:03d}"}
    return httpx.post(gw_v1 + "/chat/completions", json=payload, headers=headers, timeout=30).status_code


def test_sigkill_mid_backlog_loses_nothing_and_writes_nothing_twice(start_gateway, upstream: FakeUpstream, tmp_path) -> None:
    data = tmp_path / "crash-data"
    # One worker and 200 distinct users (no coalescing across users): a backlog that takes seconds.
    gw = start_gateway(data_dir=data, tenant_mode="none", extraction_workers=1)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: post_fact(gw.v1, i), range(JOBS)))
    assert statuses == [200] * JOBS  # every response returned, so every job was committed
    deadline = time.monotonic() + 60
    while True:
        state = queue_state(gw)
        if state["completed"] >= 10 and state["running"] >= 1:
            break
        assert time.monotonic() < deadline, state
    gw.kill()
    assert state["depth"] > 0, "the backlog drained before the kill; the test proves nothing"

    gw.start()
    after = queue_state(gw)
    assert after["recovered_on_start"] >= 1  # a batch was in flight at the kill and was requeued
    assert 1 <= after["depth"] <= JOBS - state["completed"]
    done = flush(gw, timeout=120)
    assert done["depth"] == 0 and done["dead_letters"] == 0

    ids: list[str] = []
    for i in range(JOBS):
        found = memories(gw, f"u{i:03d}")
        assert [m["text"] for m in found] == [f"User's locker number is {i}"], (i, found)
        ids += [m["id"] for m in found]
    assert len(set(ids)) == JOBS
    # A replayed job finds its own memory (same id) and writes nothing: one `add` per memory, ever.
    for i in range(0, JOBS, 7):
        memory = memories(gw, f"u{i:03d}")[0]
        assert [c["action"] for c in history(gw, f"u{i:03d}", memory["id"])] == ["add"]
