"""The change log of every memory: add, refresh, supersede, update, delete, with old and new text and cause.

Once a memory is removed (deleted, expired, evicted) its rows keep action, cause and time but lose
their text: a removed memory's words must not outlive it on disk (`PRAGMA secure_delete` in db.py
zeroes what a statement frees; hygiene truncates the WAL)."""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Sequence

import aiosqlite

from .db import truncate_wal, write

ACTIONS = ("add", "refresh", "supersede", "update", "delete", "expire", "evict")


class History:
    """Rows in the SQLite `history` table (schema in gateway/db.py). Every call is one statement."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def record(self, tenant: str, user: str, memory_id: str, action: str, old_text: str | None, new_text: str | None, cause: str) -> None:
        await self.record_many([(tenant, user, memory_id, action, old_text, new_text, cause)])

    async def record_many(self, rows: Sequence[tuple[str, str, str, str, str | None, str | None, str]]) -> None:
        """Record several changes in one statement (the extraction worker writes a batch at a time)."""
        if not rows:
            return
        for row in rows:
            if row[3] not in ACTIONS:
                raise ValueError(f"unknown history action {row[3]!r}")
        now = time.time()
        values = ",".join(["(?,?,?,?,?,?,?,?)"] * len(rows))
        params = [v for row in rows for v in (*row, now)]
        await write(
            self.db, f"INSERT INTO history (tenant, user_id, memory_id, action, old_text, new_text, cause, at) VALUES {values}", params
        )

    async def for_memory(self, tenant: str, user: str, memory_id: str) -> list[dict]:
        """Changes to one memory, oldest first."""
        sql = "SELECT action, old_text, new_text, cause, at FROM history WHERE tenant = ? AND user_id = ? AND memory_id = ? ORDER BY seq"
        async with self.db.execute(sql, (tenant, user, memory_id)) as cur:
            rows = await cur.fetchall()
        return [{"action": r["action"], "old_text": r["old_text"], "new_text": r["new_text"], "cause": r["cause"], "at": r["at"]} for r in rows]

    async def forget_user(self, tenant: str, user: str) -> int:
        cur = await write(self.db, "DELETE FROM history WHERE tenant = ? AND user_id = ?", (tenant, user))
        return cur.rowcount

    async def redact(self, tenant: str, user: str, memory_ids: Sequence[str]) -> int:
        """Drop the text of every change of these (removed) memories; returns the rows redacted."""
        if not memory_ids:
            return 0
        marks = ",".join("?" * len(memory_ids))
        sql = (f"UPDATE history SET old_text = NULL, new_text = NULL WHERE tenant = ? AND user_id = ? AND memory_id IN ({marks})"
               " AND (old_text IS NOT NULL OR new_text IS NOT NULL)")
        cur = await write(self.db, sql, (tenant, user, *memory_ids))
        return cur.rowcount

    async def redact_removed(self, existing: Callable[[str, str], Awaitable[set[str]]]) -> int:
        """Redact the rows of every memory `existing(tenant, user)` no longer lists: removals this
        process did not see (another replica's) or raced (a forget overtaking a batch)."""
        sql = "SELECT DISTINCT tenant, user_id, memory_id FROM history WHERE old_text IS NOT NULL OR new_text IS NOT NULL"
        by_user: dict[tuple[str, str], set[str]] = {}
        async with self.db.execute(sql) as cur:
            async for row in cur:
                by_user.setdefault((row[0], row[1]), set()).add(row[2])
        redacted = 0
        for (tenant, user), ids in by_user.items():
            # Read after the history rows: a memory is stored before its first change is recorded.
            gone = sorted(ids - await existing(tenant, user))
            redacted += await self.redact(tenant, user, gone)
        return redacted

    async def scrub(self) -> bool:
        """Empty the WAL, whose older page images still hold what was deleted or redacted."""
        return await truncate_wal(self.db)
