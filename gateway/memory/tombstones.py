"""When each forgotten user was forgotten: a LanceDB table next to the memories.

A forget must hold whatever an extraction batch does afterwards: a batch already running, a job
another replica still has queued, a job a crash left running and a restart replays. Each of those
learned from an exchange that began before the forget, so every write derived from a job is checked
against the user's tombstone and dropped when the job is not newer. In LanceDB rather than SQLite:
it survives restarts like SQLite would, and every replica sharing the store sees it.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import pyarrow as pa

TABLE = "forgotten"
SCHEMA = pa.schema([pa.field("tenant", pa.string(), nullable=False), pa.field("user_id", pa.string(), nullable=False), pa.field("at", pa.float64())])
Key = tuple[str, str]


class Tombstones:
    """The table, and a copy of it in memory read again whenever its version moves (a forget here or
    on another replica): a check costs a version lookup, not a LanceDB query per extraction commit."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._known: dict[Key, float] = {}
        self._version: int | None = None  # the table version `_known` reflects

    @classmethod
    async def open(cls, db: Any) -> Tombstones:
        return cls(await db.create_table(TABLE, schema=SCHEMA, exist_ok=True))

    async def forget(self, tenant: str, user: str) -> float:
        """Record (or move forward) the user's tombstone; returns its time."""
        at = time.time()
        row = pa.table({"tenant": [tenant], "user_id": [user], "at": [at]}, schema=SCHEMA)
        await self.table.merge_insert(["tenant", "user_id"]).when_matched_update_all().when_not_matched_insert_all().execute(row)
        self._known[(tenant, user)] = at  # at once: the version check below may lag by the read consistency interval
        return at

    async def since(self, keys: Iterable[Key]) -> dict[Key, float]:
        """The tombstone time of those of `keys` that were ever forgotten."""
        version = await self.table.version()
        if version != self._version:
            rows = await self.table.query().select(["tenant", "user_id", "at"]).to_arrow()
            for tenant, user, at in zip(rows.column("tenant").to_pylist(), rows.column("user_id").to_pylist(), rows.column("at").to_pylist()):
                self._known[(tenant, user)] = max(self._known.get((tenant, user), 0.0), float(at))
            self._version = version
        return {key: self._known[key] for key in set(keys) if key in self._known}

    async def optimize(self) -> None:
        """Compact: every forget is a commit, and a read opens every fragment."""
        await self.table.optimize()

    def close(self) -> None:
        self.table.close()


__all__ = ["Tombstones", "TABLE"]
