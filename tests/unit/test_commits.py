"""A commit that lost a race to another writer is run again; any other failure is not."""

from __future__ import annotations

import asyncio

import pytest

from gateway.memory import commits


def test_a_commit_conflict_is_retried_until_the_commit_goes_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commits, "FIRST_DELAY", 0.001)
    calls = []

    async def commit() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("lance error: Too many concurrent writers. Attempted 5 times, but failed on retry_timeout of 30.000 seconds.")
        return "version 7"

    assert asyncio.run(commits.committed(commit)) == "version 7" and len(calls) == 3


def test_other_errors_and_a_conflict_past_the_last_attempt_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commits, "FIRST_DELAY", 0.001)
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise RuntimeError("lance error: IO: no such bucket")

    async def contended() -> None:
        calls.append(1)
        raise RuntimeError("lance error: Retryable commit conflict for version 80")

    with pytest.raises(RuntimeError, match="no such bucket"):
        asyncio.run(commits.committed(broken))
    assert len(calls) == 1
    with pytest.raises(RuntimeError, match="commit conflict"):
        asyncio.run(commits.committed(contended, attempts=3))
    assert len(calls) == 4


def test_the_first_committed_row_of_each_key_wins_whatever_order_they_are_read_in() -> None:
    keys = ["a", "b", "a", "b", "c"]
    rows = [(7 << 32) + 1, 3 << 32, 2 << 32, (3 << 32) + 5, 9]
    stamps = [1.5, 2.0, 1.0, 2.5, 3.0]
    assert commits.first_stamps(keys, rows, stamps) == {"a": 1.0, "b": 2.0, "c": 3.0}
