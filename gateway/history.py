"""The change log of every memory: add, refresh, supersede, update, delete, with old and new text and cause."""

from __future__ import annotations

import time
from typing import Sequence

import aiosqlite

from .db import write

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
