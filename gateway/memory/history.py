"""The change log of every memory: add, refresh, supersede, update, delete, with old and new text and cause.

Once a memory is removed (deleted, expired, evicted) its rows keep action, cause and time but lose
their text: a removed memory's words must not outlive it on disk (`PRAGMA secure_delete` in gateway/sqlite.py
zeroes what a statement frees; hygiene truncates the WAL)."""

from __future__ import annotations

import time
from typing import Sequence

import aiosqlite

from gateway.metrics import MEMORY_WRITE_ACTIONS
from gateway.sqlite import truncate_wal, write

# The history actions are the label values of memgate_memories_written_total, declared there so they start at zero.
ACTIONS = MEMORY_WRITE_ACTIONS


class History:
    """Rows in the SQLite `history` table (schema in gateway/sqlite.py). Every call is one statement."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def record(
        self, tenant: str, user: str, memory_id: str, action: str, old_text: str | None, new_text: str | None, cause: str, tier: str | None = None,
    ) -> None:
        """Record one change of a memory: one row, written as it happens."""
        if action not in ACTIONS:
            raise ValueError(f"unknown history action {action!r}")
        await write(
            self.db,
            "INSERT INTO history (tenant, user_id, memory_id, action, old_text, new_text, cause, at, tier) VALUES (?,?,?,?,?,?,?,?,?)",
            (tenant, user, memory_id, action, old_text, new_text, cause, time.time(), tier),
        )

    async def for_memory(self, tenant: str, user: str, memory_id: str) -> list[dict]:
        """Changes to one memory, oldest first; a change recorded without its tier (a removal) has the
        tier of the change before it."""
        sql = "SELECT action, old_text, new_text, cause, at, tier FROM history WHERE tenant = ? AND user_id = ? AND memory_id = ? ORDER BY seq"
        async with self.db.execute(sql, (tenant, user, memory_id)) as cur:
            rows = await cur.fetchall()
        out, tier = [], None
        for r in rows:
            tier = r["tier"] or tier
            out.append({"action": r["action"], "old_text": r["old_text"], "new_text": r["new_text"], "cause": r["cause"], "at": r["at"], "tier": tier})
        return out

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

    async def texted_users(self) -> set[tuple[str, str]]:
        """(tenant, user) of every user with history rows that still carry text."""
        sql = "SELECT DISTINCT tenant, user_id FROM history WHERE old_text IS NOT NULL OR new_text IS NOT NULL"
        async with self.db.execute(sql) as cur:
            return {(row[0], row[1]) for row in await cur.fetchall()}

    async def texted(self, tenant: str, user: str) -> set[str]:
        """Ids of one user's memories whose history rows still carry text."""
        sql = "SELECT DISTINCT memory_id FROM history WHERE tenant = ? AND user_id = ? AND (old_text IS NOT NULL OR new_text IS NOT NULL)"
        async with self.db.execute(sql, (tenant, user)) as cur:
            return {row[0] for row in await cur.fetchall()}

    async def scrub(self) -> bool:
        """Empty the WAL, whose older page images still hold what was deleted or redacted."""
        return await truncate_wal(self.db)
