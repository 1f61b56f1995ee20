"""The short CI version of bench/bench_load.py: 16 clients for ~15 s with one kill -9 midway."""

from __future__ import annotations

from bench.bench_load import run, table


def test_load_with_a_kill_loses_no_accepted_job_and_leaves_clean_files() -> None:
    result, checks = run(clients=16, duration=15.0, kill_at=7.0, pause=0.15)  # paced: the flush after it stays short
    print("\n" + table(result, checks, 16))
    assert result.errors == []  # connection errors only while the gateway was down
    assert result.kill_window_errors > 0 and result.restarted_at is not None  # the kill happened under load
    assert len(result.accepted) > 300
    assert checks["lost"] == 0, checks["lost_examples"]
    assert checks["duplicate_ids"] == 0 and checks["duplicate_texts"] == 0
    assert checks["queue_after_flush"]["depth"] == 0 and checks["queue_after_flush"]["dead_letters"] == 0  # type: ignore[index]
    assert checks["queue_after_flush"]["dropped"] == 0  # type: ignore[index]
    assert checks["jobs_left"] == [] and checks["sqlite_integrity"] == "ok"
    assert checks["admin_sample"].split("/")[0] == checks["admin_sample"].split("/")[1].split()[0]  # type: ignore[union-attr]
    assert checks["lancedb_rows"] >= len(result.accepted)
    peak = max(mb for _, mb in result.rss)
    assert peak < 1024, f"RSS peaked at {peak:.0f} MB"
