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

from .store import one_of, sql_literal

TABLE = "forgotten"
SCHEMA = pa.schema([pa.field("tenant", pa.string(), nullable=False), pa.field("user_id", pa.string(), nullable=False), pa.field("at", pa.float64())])
Key = tuple[str, str]


class Tombstones:
    def __init__(self, table: Any) -> None:
        self.table = table

    @classmethod
    async def open(cls, db: Any) -> Tombstones:
        return cls(await db.create_table(TABLE, schema=SCHEMA, exist_ok=True))

    async def forget(self, tenant: str, user: str) -> float:
        """Record (or move forward) the user's tombstone; returns its time."""
        at = time.time()
        row = pa.table({"tenant": [tenant], "user_id": [user], "at": [at]}, schema=SCHEMA)
        await self.table.merge_insert(["tenant", "user_id"]).when_matched_update_all().when_not_matched_insert_all().execute(row)
        return at

    async def since(self, keys: Iterable[Key]) -> dict[Key, float]:
        """The tombstone time of those of `keys` that were ever forgotten (one read for all)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        # One IN list per tenant: no OR chain grows with the number of users.
        by_tenant: dict[str, list[str]] = {}
        for tenant, user in wanted:
            by_tenant.setdefault(tenant, []).append(user)
        clauses = [f"tenant = {sql_literal(t)} AND {one_of('user_id', users)}" for t, users in by_tenant.items()]
        found: dict[Key, float] = {}
        for clause in clauses:
            rows = await self.table.query().where(clause).to_arrow()
            for tenant, user, at in zip(rows.column("tenant").to_pylist(), rows.column("user_id").to_pylist(), rows.column("at").to_pylist()):
                found[(tenant, user)] = max(found.get((tenant, user), 0.0), float(at))
        return found

    def close(self) -> None:
        self.table.close()


__all__ = ["Tombstones", "TABLE"]
