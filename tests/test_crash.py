"""kill -9 with a backlog: every committed job completes after restart, no memory is written twice."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from concurrent.futures import ThreadPoolExecutor

import httpx

from .extraction_helpers import KEY, flush, history, memories, queue_state
from .fake_upstream import FakeUpstream

JOBS = 200
DONE = 20  # jobs finished before the kill


def post_fact(gw_v1: str, i: int) -> int:
    payload = {"model": "m", "messages": [{"role": "user", "content": f"My locker number is {i}."}]}
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": f"u{i:03d}"}
    return httpx.post(gw_v1 + "/chat/completions", json=payload, headers=headers, timeout=30).status_code


def test_sigkill_mid_backlog_loses_nothing_and_writes_nothing_twice(start_gateway, upstream: FakeUpstream, tmp_path) -> None:
    data = tmp_path / "crash-data"
    # One worker and the llm extractor, whose calls to the fake upstream the test can hold: at the
    # kill, DONE jobs are done, a batch is inside its extraction call and the rest wait behind it.
    gw = start_gateway(data_dir=data, tenant_mode="none", extraction_workers=1, extractor="llm", extraction_api_key="sk-extract")
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda i: post_fact(gw.v1, i), range(DONE))) == [200] * DONE
        assert flush(gw)["completed"] == DONE
        calls = upstream.extraction_calls
        upstream.hold_extractions.clear()
        try:
            statuses = list(pool.map(lambda i: post_fact(gw.v1, i), range(DONE, JOBS)))
            assert statuses == [200] * (JOBS - DONE)  # every response returned, so every job was committed
            assert upstream.wait_for(lambda: upstream.extraction_calls > calls, timeout=30)
            state = queue_state(gw)
            assert state["running"] >= 1 and state["completed"] == DONE and state["depth"] == JOBS - DONE, state
            gw.kill()
        finally:
            upstream.hold_extractions.set()

    with closing(sqlite3.connect(data / "memgate.sqlite3")) as db:  # what the killed process left behind
        in_flight = db.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone()[0]
    assert in_flight == state["running"] >= 1
    gw.start()
    after = queue_state(gw)
    assert after["recovered_on_start"] == in_flight  # exactly the batch in flight at the kill was requeued
    assert after["depth"] + after["completed"] == JOBS - DONE  # the workers start at once: some may be done already
    done = flush(gw, timeout=120)
    assert done["depth"] == 0 and done["dead_letters"] == 0

    ids: list[str] = []
    for i in range(JOBS):
        found = memories(gw, f"u{i:03d}")
        assert [m["text"] for m in found] == [f"The user's locker number is {i}"], (i, found)
        ids += [m["id"] for m in found]
    assert len(set(ids)) == JOBS
    # A replayed job finds its own memory (same id) and writes nothing: one `add` per memory, ever.
    for i in range(0, JOBS, 7):
        memory = memories(gw, f"u{i:03d}")[0]
        assert [c["action"] for c in history(gw, f"u{i:03d}", memory["id"])] == ["add"]
