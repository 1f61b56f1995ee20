"""The change log of every memory: add, refresh, supersede, update, delete, with old and new text and cause.

A LanceDB table `history` beside `memories` in the shared store, so every replica answers the same
history. An event that must happen once per memory (its add, its removal) has an id derived from
the memory and its creation time, and goes in with a merge-insert on that id: two replicas
recording the same removal at once leave one row. Once a memory is removed (deleted, expired,
evicted) its rows keep action, cause and time but lose their text, and `scrub` rewrites the files
that still held it."""

from __future__ import annotations

import logging
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import BTree

from gateway.memory.commits import committed, first_stamps
from gateway.memory.sql import one_of, scope, sql_literal
from gateway.metrics import MEMORY_WRITE_ACTIONS
from gateway.sqlite import instance_id

log = logging.getLogger("memgate.history")
# The history actions are the label values of memgate_memories_written_total, declared there so they start at zero.
ACTIONS = MEMORY_WRITE_ACTIONS
TABLE = "history"
NAMESPACE = uuid.UUID("0b6c7e3e-5d7a-4f61-9a5e-2f4b8c1d9e70")
REMOVALS = ("delete", "expire", "evict")
ORDER = {action: i for i, action in enumerate(ACTIONS)}  # ties in time: an add before what follows it
SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("memory_id", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("old_text", pa.string()),
        pa.field("new_text", pa.string()),
        pa.field("cause", pa.string(), nullable=False),
        pa.field("at", pa.float64(), nullable=False),
        pa.field("tier", pa.string()),  # the memory's tier at the change; null on a removal
    ]
)
TEXTED = "(old_text IS NOT NULL OR new_text IS NOT NULL)"


@dataclass
class Event:
    """One change of one memory. `created` (the memory's creation time) makes the ids of its add and
    removal deterministic: the same memory added or removed twice, by two replicas, is one event."""

    tenant: str
    user: str
    memory_id: str
    action: str
    old_text: str | None
    new_text: str | None
    cause: str
    created: float | None = None
    tier: str | None = None

    def once(self) -> bool:
        """Whether this event happens once per memory (its add, its removal), whoever records it."""
        return self.created is not None and self.action in ("add", *REMOVALS)

    def event_id(self) -> str:
        if not self.once():
            return str(uuid.uuid4())
        kind = "add" if self.action == "add" else "remove"
        return str(uuid.uuid5(NAMESPACE, f"{self.tenant}\0{self.user}\0{self.memory_id}\0{kind}\0{self.created!r}"))


class History:
    """The shared `history` table. Every write is one commit; `record` takes a whole batch."""

    def __init__(self, table: Any) -> None:
        self.table = table
        # Fragments holding rows redacted or deleted since the last scrub; None: unknown (a change
        # before this process started may not have been scrubbed), so the next scrub rewrites all.
        self._dirty: set[int] | None = None

    @classmethod
    async def open(cls, db: Any) -> History:
        table = await db.create_table(TABLE, schema=SCHEMA, exist_ok=True)
        have = {tuple(i.columns) for i in await table.list_indices()}
        for column in ("event_id", "memory_id"):  # the merge-insert's key, and a memory's lookup: no full scans
            if (column,) not in have:
                try:
                    await table.create_index(column, config=BTree())
                except Exception:  # another replica starting at the same moment made it; reads work without it too
                    log.warning("could not index the history table", extra={"column": column}, exc_info=True)
        return cls(table)

    async def record(self, events: Sequence[Event]) -> int:
        """Record changes as they happen; returns how many were new (an event another replica already
        recorded is not recorded again)."""
        for e in events:
            if e.action not in ACTIONS:
                raise ValueError(f"unknown history action {e.action!r}")
        if not events:
            return 0
        rows = {e.event_id(): e for e in events}
        once = [eid for eid, e in rows.items() if e.once()]
        if once:  # already recorded (a replay, another replica): not again
            for eid in await self._present(once):
                del rows[eid]
        if not rows:
            return 0
        now = time.time()
        data = pa.table(
            {
                "event_id": list(rows),
                "tenant": [e.tenant for e in rows.values()],
                "user_id": [e.user for e in rows.values()],
                "memory_id": [e.memory_id for e in rows.values()],
                "action": [e.action for e in rows.values()],
                "old_text": [e.old_text for e in rows.values()],
                "new_text": [e.new_text for e in rows.values()],
                "cause": [e.cause for e in rows.values()],
                "at": [now] * len(rows),
                "tier": [e.tier for e in rows.values()],
            },
            schema=SCHEMA,
        )
        # An append never conflicts with another replica's commit; the read-back settles an event two recorded at once.
        await committed(lambda: self.table.add(data))
        lost = await self._first_wins([eid for eid in once if eid in rows], now)
        return len(rows) - lost

    async def _present(self, event_ids: Sequence[str]) -> set[str]:
        rows = await self.table.query().where(one_of("event_id", event_ids)).select(["event_id"]).to_arrow()
        return set(rows.column("event_id").to_pylist())

    async def _first_wins(self, event_ids: Sequence[str], at: float) -> int:
        """Of the once-only events just recorded at `at`, delete those another writer recorded first (see
        `first_stamps`), their fragments noted for `scrub`; returns how many were deleted."""
        if not event_ids:
            return 0
        rows = await self.table.query().where(one_of("event_id", event_ids)).select(["event_id", "at"]).with_row_id().to_arrow()
        keys, row_ids, stamps = rows.column("event_id").to_pylist(), rows.column("_rowid").to_pylist(), rows.column("at").to_pylist()
        later = {eid for eid, stamp in first_stamps(keys, row_ids, stamps).items() if stamp != at}
        if later:
            if self._dirty is not None:
                self._dirty.update(row >> 32 for eid, row, stamp in zip(keys, row_ids, stamps) if eid in later and stamp == at)
            await committed(lambda: self.table.delete(f"{one_of('event_id', sorted(later))} AND at = {at!r}"))
        return len(later)

    async def for_memory(self, tenant: str, user: str, memory_id: str) -> list[dict]:
        """Changes to one memory, oldest first; a change recorded without its tier (a removal) has the
        tier of the change before it."""
        rows = (await self.table.query().where(f"{scope(tenant, user)} AND memory_id = {sql_literal(memory_id)}").to_arrow()).to_pylist()
        rows.sort(key=lambda r: (r["at"], ORDER.get(r["action"], 0), r["event_id"]))
        out, tier = [], None
        for r in rows:
            tier = r["tier"] or tier
            out.append({"action": r["action"], "old_text": r["old_text"], "new_text": r["new_text"], "cause": r["cause"], "at": r["at"], "tier": tier})
        return out

    async def _note(self, where: str) -> None:
        if self._dirty is not None:
            rows = await self.table.query().where(where).select(["event_id"]).with_row_id().to_arrow()
            self._dirty.update(int(r) >> 32 for r in rows.column("_rowid").to_pylist())

    async def forget_user(self, tenant: str, user: str) -> int:
        where = scope(tenant, user)
        await self._note(where)
        result = await self.table.delete(where)
        return int(result.num_deleted_rows)

    async def forget_memories(self, tenant: str, user: str, memory_ids: Sequence[str]) -> int:
        """Delete every change of these memories (a write undone because its user was forgotten meanwhile)."""
        if not memory_ids:
            return 0
        where = f"{scope(tenant, user)} AND {one_of('memory_id', memory_ids)}"
        await self._note(where)
        return int((await self.table.delete(where)).num_deleted_rows)

    async def redact(self, tenant: str, user: str, memory_ids: Sequence[str]) -> int:
        """Drop the text of every change of these (removed) memories; returns the rows redacted."""
        if not memory_ids:
            return 0
        where = f"{scope(tenant, user)} AND {one_of('memory_id', memory_ids)} AND {TEXTED}"
        await self._note(where)
        result = await self.table.update({"old_text": None, "new_text": None}, where=where)
        return int(result.rows_updated)

    async def _distinct(self, columns: list[str], where: str) -> pa.Table:
        rows = await self.table.query().where(where).select(columns).to_arrow()
        return rows.group_by(columns).aggregate([])

    async def texted_users(self) -> set[tuple[str, str]]:
        """(tenant, user) of every user with history rows that still carry text."""
        rows = await self._distinct(["tenant", "user_id"], TEXTED)
        return set(zip(rows.column("tenant").to_pylist(), rows.column("user_id").to_pylist()))

    async def texted(self, tenant: str, user: str) -> set[str]:
        """Ids of one user's memories whose history rows still carry text."""
        rows = await self._distinct(["memory_id"], f"{scope(tenant, user)} AND {TEXTED}")
        return set(pc.unique(rows.column("memory_id")).to_pylist())

    async def scrub(self) -> bool:
        """Rewrite the fragments that held redacted or deleted rows and drop old versions, so removed
        text is in no file of the store; False when there was nothing to do."""
        fragments, self._dirty = self._dirty, set()
        if fragments is not None and not fragments:
            return False
        try:
            ranges = [None] if fragments is None else [f"_rowid >= {f << 32} AND _rowid < {(f + 1) << 32}" for f in sorted(fragments)]
            for where in ranges:
                await self.table.update(updates_sql={"event_id": "event_id"}, where=where)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # lancedb warns that older versions go: that is the point
                await self.table.optimize(cleanup_older_than=timedelta(0))
        except BaseException:
            self._dirty = None if fragments is None or self._dirty is None else self._dirty | fragments  # retried next time
            raise
        return True

    async def adopt(self, db: Any) -> int:
        """Move the history an older release kept in the replica's SQLite file (`history` table) into the
        shared table, once: rows keep their times; ids derive from the file's instance and row number."""
        instance = await instance_id(db)
        moved = 0
        while True:
            async with db.execute("SELECT seq, tenant, user_id, memory_id, action, old_text, new_text, cause, at, tier FROM history ORDER BY seq LIMIT 1000") as cur:
                rows = [tuple(r) for r in await cur.fetchall()]
            if not rows:
                return moved
            names = ["event_id", *SCHEMA.names[1:]]
            data = pa.table({n: [str(uuid.uuid5(NAMESPACE, f"{instance}:{r[0]}")) if n == "event_id" else r[i] for r in rows] for i, n in enumerate(names)}, schema=SCHEMA)
            await self.table.merge_insert("event_id").when_not_matched_insert_all().execute(data)  # a crash before the DELETE repeats nothing
            await db.execute(f"DELETE FROM history WHERE seq <= {int(rows[-1][0])}")
            moved += len(rows)

    async def optimize(self) -> None:
        """Compact: every change is a commit, and a read opens every fragment."""
        await self.table.optimize(cleanup_older_than=timedelta(minutes=10))

    def close(self) -> None:
        self.table.close()


__all__ = ["History", "Event", "TABLE", "ACTIONS"]
