"""What one exchange may cost: messages and bytes per job, upstream calls per job, dead letters kept
for a while only, and the caller's key held only by the jobs that will use it."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx

from .extraction_helpers import KEY, flush, queue_state, say, texts
from .fake_upstream import FakeUpstream


def job_rows(data: Path) -> list[sqlite3.Row]:
    """The jobs table as it is on disk (read after the gateway stopped)."""
    db = sqlite3.connect(data / "memgate.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT id, state, messages FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()


def chat(gw, user: str, messages: list[dict[str, str]]) -> None:
    httpx.post(gw.v1 + "/chat/completions", json={"model": "m", "messages": messages}, timeout=60,
               headers={"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user}).raise_for_status()


def test_a_2000_message_chat_makes_a_bounded_job_that_keeps_the_newest_messages(start_gateway, tmp_path: Path) -> None:
    data = tmp_path / "long"
    gw = start_gateway(data_dir=data, tenant_mode="none", extraction_workers=0)
    filler = [{"role": "user", "content": f"filler {i:04d} " + "x" * 990} for i in range(1999)]
    chat(gw, "lena", [*filler, {"role": "user", "content": "I live in Lisbon."}])
    assert gw.metric("memgate_extraction_job_messages_cut_total") == 2000 - 64  # --max-job-messages 64
    gw.stop()
    [row] = job_rows(data)
    kept = json.loads(row["messages"])
    assert len(row["messages"].encode()) < 64 * 1024 + 4096  # the row was 2 MB before the bound
    assert len(kept) == 64 and kept[-1] == ["user", "I live in Lisbon.", True] and kept[0][1].startswith("filler 1936 ")
    gw = start_gateway(data_dir=data, tenant_mode="none")
    flush(gw)
    assert texts(gw, "lena") == ["User lives in Lisbon"]


def extraction_calls(upstream: FakeUpstream) -> list:
    return [r for r in upstream.received if r.path.endswith("/chat/completions") and (b"memgate_extraction" in r.body or b"memgate_reconcile" in r.body)]


def test_the_llm_extractor_makes_at_most_max_llm_calls_per_job_reading_the_newest_text(start_gateway, upstream: FakeUpstream) -> None:
    gw = start_gateway(tenant_mode="none", extractor="llm", max_llm_calls_per_job=2, max_job_messages=1000, max_job_bytes=10**6)
    before = len(extraction_calls(upstream))
    paragraphs = [{"role": "user", "content": f"Paragraph {i}: " + "words and more words. " * 230} for i in range(30)]  # ~150k chars, 7 prompts
    chat(gw, "porto", [*paragraphs, {"role": "user", "content": "I live in Porto."}])
    flush(gw)
    calls = extraction_calls(upstream)[before:]
    assert len(calls) == 2
    assert "I live in Porto." in calls[-1].json()["messages"][-1]["content"]
    assert "Paragraph 0:" not in "".join(c.json()["messages"][-1]["content"] for c in calls)  # the oldest text is what goes unread
    assert texts(gw, "porto") == ["The user live in Porto"]


def dead_rows(data: Path) -> int:
    return sum(1 for row in job_rows(data) if row["state"] == "dead")


def test_dead_letters_are_purged_past_queue_max_and_past_the_retention_and_counted(start_gateway, tmp_path: Path) -> None:
    data = tmp_path / "dead"
    failing = {"tenant_mode": "none", "extractor": "llm", "extraction_model": "fake-error-503", "extraction_api_key": "sk-x",
               "extraction_retry_seconds": 0.01, "queue_max": 2}
    gw = start_gateway(data_dir=data, **failing)
    for city in ("Lima", "Cusco", "Puno"):
        say(gw, "sol", f"I live in {city}.")
        flush(gw)
    state = queue_state(gw)
    assert state["dead_letters"] == 2 and state["dead_letters_purged"] == 1  # at most --queue-max dead letters, the oldest goes
    assert gw.metric("memgate_extraction_dead_letters_purged_total") == 1
    gw.stop()
    assert dead_rows(data) == 2
    with closing(sqlite3.connect(data / "memgate.sqlite3")) as db:
        [(dead_since,)] = db.execute("SELECT max(next_at) FROM jobs WHERE state = 'dead'").fetchall()
    while time.time() <= dead_since + 1.0:  # the clock, not the gateway: the rows must be older than the retention below
        time.sleep(0.05)
    gw = start_gateway(data_dir=data, dead_letter_retention=1.0, **failing)  # past the retention: purged on start
    state = queue_state(gw)
    assert state["dead_letters"] == 0 and state["dead_letters_purged"] == 2
    say(gw, "sol", "I live in Arequipa.")
    flush(gw)
    deadline = time.monotonic() + 15
    while queue_state(gw)["dead_letters_purged"] < 3 and time.monotonic() < deadline:  # the periodic purge, while running
        time.sleep(0.1)
    assert queue_state(gw)["dead_letters"] == 0 and gw.metric("memgate_extraction_dead_letters_purged_total") == 3
    gw.stop()
    assert dead_rows(data) == 0


def test_the_callers_key_is_held_only_for_llm_jobs_without_an_extraction_key(start_gateway) -> None:
    for settings, held in (({}, 0), ({"extractor": "llm", "extraction_api_key": "sk-own"}, 0), ({"extractor": "llm"}, 1)):
        gw = start_gateway(tenant_mode="none", extraction_workers=0, **settings)
        say(gw, "kim", "I live in Seoul.")
        state = queue_state(gw)
        assert state["depth"] == 1 and state["caller_keys_held"] == held, settings
        gw.stop()
