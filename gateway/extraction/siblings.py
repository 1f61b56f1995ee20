"""The other workers' extraction queues on this machine (`memgate serve --workers N`), through their
SQLite files: the admin queue routes answer for, wait for and forget across every worker, whichever
worker the request reached."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any, Sequence

POLL_SECONDS = 0.05


class SiblingQueues:
    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def _each(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement on every sibling's file that exists (a worker not started yet has none): its first row, or the row count of a write."""
        out = []
        for path in self.paths:
            if not path.exists():
                continue
            db = sqlite3.connect(str(path), timeout=5, isolation_level=None)
            try:
                cur = db.execute(sql, params)
                out.append(cur.fetchone() if cur.description else (cur.rowcount,))
            finally:
                db.close()
        return out

    async def state(self) -> dict[str, Any]:
        """Depth, running jobs, dead letters and the oldest pending job's age, over the siblings."""
        rows = await asyncio.to_thread(
            self._each, "SELECT COUNT(*) FILTER (WHERE state != 'dead'), COUNT(*) FILTER (WHERE state = 'running'),"
            " COUNT(*) FILTER (WHERE state = 'dead'), MIN(created_at) FILTER (WHERE state != 'dead') FROM jobs")
        oldest = min((r[3] for r in rows if r[3] is not None), default=None)
        return {"depth": sum(r[0] for r in rows), "running": sum(r[1] for r in rows), "dead_letters": sum(r[2] for r in rows),
                "oldest_age_seconds": round(max(0.0, time.time() - oldest), 3) if oldest is not None else 0.0}

    def _newest(self) -> dict[Path, int]:
        out = {}
        for path in self.paths:
            if path.exists():
                db = sqlite3.connect(str(path), timeout=5)
                try:
                    out[path] = int(db.execute("SELECT MAX(id) FROM jobs").fetchone()[0] or 0)
                finally:
                    db.close()
        return out

    def _pending(self, marks: dict[Path, int]) -> int:
        left = 0
        for path, mark in marks.items():
            db = sqlite3.connect(str(path), timeout=5)
            try:
                left += db.execute("SELECT COUNT(*) FROM jobs WHERE id <= ? AND state != 'dead'", (mark,)).fetchone()[0]
            finally:
                db.close()
        return left

    async def marks(self) -> dict[Path, int]:
        """The newest job id in each sibling's file: what a flush called now waits for."""
        return await asyncio.to_thread(self._newest)

    async def flush(self, marks: dict[Path, int], timeout: float) -> bool:
        """Wait until every sibling finished its jobs up to its mark (dead letters aside); False on timeout."""
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(self._pending, marks):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    async def forget_user(self, tenant: str, user: str) -> int:
        """Delete the user's jobs that are not running from every sibling's file (a running batch's writes
        are dropped by the tombstone); the sibling skips ids it no longer finds. Returns how many."""
        rows = await asyncio.to_thread(self._each, "DELETE FROM jobs WHERE tenant = ? AND user_id = ? AND state != 'running'", (tenant, user))
        return sum(r[0] for r in rows)


__all__ = ["SiblingQueues"]
