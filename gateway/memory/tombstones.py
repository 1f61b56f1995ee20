"""When each forgotten user was forgotten: a LanceDB table next to the memories.

A forget must hold whatever an extraction batch does afterwards: a batch already running, a job
another replica still has queued, a job a crash left running and a restart replays. Each of those
learned from an exchange that began before the forget, so every write derived from a job is checked
against the user's tombstone (read fresh from the store, before and again after the commit) and
dropped when the job is not newer. Recall reads the table with a bounded staleness (`STALE_SECONDS`)
and tells the hot tier of every user forgotten elsewhere, so no replica serves them past the bound.
Job and tombstone times are wall clocks of different replicas: keep them in sync (NTP).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterable

import pyarrow as pa

TABLE = "forgotten"
SCHEMA = pa.schema([pa.field("tenant", pa.string(), nullable=False), pa.field("user_id", pa.string(), nullable=False), pa.field("at", pa.float64())])
Key = tuple[str, str]
FRESH_SECONDS = 0.5  # recall starts a background re-read of the table once its copy is this old
STALE_SECONDS = 1.0  # and waits for the re-read past this age: a forget elsewhere reaches recall within it


class Tombstones:
    """The table, and a copy of it in memory read again whenever its version moves (a forget here or
    on another replica): a check costs a version lookup, not a LanceDB query per extraction commit."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._known: dict[Key, float] = {}
        self._version: int | None = None  # the table version `_known` reflects
        self._checked = float("-inf")  # monotonic time the last completed re-read started
        self._refresh: asyncio.Task[None] | None = None
        self.on_forgotten: list[Callable[[Key], None]] = []  # called for each user forgotten by someone else

    @classmethod
    async def open(cls, db: Any) -> Tombstones:
        return cls(await db.create_table(TABLE, schema=SCHEMA, exist_ok=True))

    async def forget(self, tenant: str, user: str) -> float:
        """Record (or move forward) the user's tombstone; returns its time."""
        at = time.time()
        row = pa.table({"tenant": [tenant], "user_id": [user], "at": [at]}, schema=SCHEMA)
        await self.table.merge_insert(["tenant", "user_id"]).when_matched_update_all().when_not_matched_insert_all().execute(row)
        self._known[(tenant, user)] = at  # at once: other readers of the table see it at their next re-read
        return at

    async def _read(self) -> None:
        """Re-read the newest version (not LanceDB's read-consistency copy, up to a second old)."""
        started = time.monotonic()
        await self.table.checkout_latest()
        version = await self.table.version()
        if version != self._version:
            rows = await self.table.query().select(["tenant", "user_id", "at"]).to_arrow()
            changed = []
            for tenant, user, at in zip(rows.column("tenant").to_pylist(), rows.column("user_id").to_pylist(), rows.column("at").to_pylist()):
                if float(at) > self._known.get((tenant, user), 0.0):
                    self._known[(tenant, user)] = float(at)
                    changed.append((tenant, user))
            self._version = version
            for key in changed:
                for listener in self.on_forgotten:
                    listener(key)
        self._checked = max(self._checked, started)

    async def current(self) -> None:
        """Bounded staleness for recall: re-read in the background past FRESH_SECONDS, wait past STALE_SECONDS."""
        age = time.monotonic() - self._checked
        if age < FRESH_SECONDS:
            return
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._read())
        if age >= STALE_SECONDS:
            await asyncio.shield(self._refresh)

    async def since(self, keys: Iterable[Key]) -> dict[Key, float]:
        """The tombstone time of those of `keys` that were ever forgotten, read fresh from the store."""
        await self._read()
        return {key: self._known[key] for key in set(keys) if key in self._known}

    async def optimize(self) -> None:
        """Compact: every forget is a commit, and a read opens every fragment."""
        await self.table.optimize()

    async def aclose(self) -> None:
        if self._refresh is not None:
            await asyncio.gather(self._refresh, return_exceptions=True)
        self.table.close()


__all__ = ["Tombstones", "TABLE"]
