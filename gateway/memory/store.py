"""The durable memory store: one LanceDB table `memories`, every read and write scoped by tenant and user."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from datetime import timedelta
from typing import Any, AsyncIterator, Awaitable, Callable

import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS

from gateway.memory.confirmations import PREFIX as PENDING
from gateway.memory.records import COLUMNS, META_DIM, META_EMBEDDER, STORED_KINDS, Memory, StoreMismatch, cursor_decode, cursor_encode, rows_to_memories, schema, to_arrow
from gateway.memory import tables
from gateway.memory.commits import committed, first_stamps
from gateway.memory.tables import TABLE
from gateway.memory.scopes import ScopeDirectory
from gateway.memory.sql import one_of, scope, sql_literal

# Past this many unseen commits, assume some were another replica's rather than checking each.
MAX_VERSION_GAP = 10_000
MAX_CONCURRENT_OPS = 8  # LanceDB reads and writes at once; a read holds open files for every fragment
ERASE = timedelta(0)  # erasing drops every old version: their files hold what was removed

# Below this many rows a filtered brute-force scan beats an approximate index (and needs no training).
ANN_MIN_ROWS = 50_000
# Other replicas' commits become visible to our reads within this interval.
READ_CONSISTENCY = timedelta(seconds=0.5)


class MemoryStore:
    """Memories in LanceDB. Writes are batched (one commit per call); ids make adds idempotent."""

    def __init__(self, db: Any, table: Any, embedder_name: str, dim: int) -> None:
        self.db = db
        self.table = table
        self.embedder_name = embedder_name
        self.dim = dim
        self.schema = schema(dim, embedder_name)
        # Versions this process committed: a hot tier seeing only these needs no reload.
        self.own_versions: set[int] = set()
        self._ops = asyncio.Semaphore(MAX_CONCURRENT_OPS)
        # Fragments holding rows deleted since the last erase; None: unknown (a removal before this
        # process started may not have been erased), so the next erase rewrites every fragment.
        self._erased: set[int] | None = None
        self.scopes = ScopeDirectory(self._scope_pairs, self.version, self.foreign_commits)

    @classmethod
    async def open(cls, uri: str, embedder_name: str, dim: int, *, cache_mb: int = 256) -> MemoryStore:
        # LanceDB's default caches (6 GB index, 1 GB metadata) kept growing with every commit: RSS
        # rose ~70 MB a minute under bench_load.py. A quarter goes to metadata (manifests, fragments).
        cache = max(cache_mb, 8) << 20
        session = lancedb.Session(index_cache_size_bytes=cache - cache // 4, metadata_cache_size_bytes=cache // 4)
        db = await lancedb.connect_async(uri, read_consistency_interval=READ_CONSISTENCY, session=session)
        names = (await db.list_tables()).tables
        if TABLE in names:
            table = await db.open_table(TABLE)
            meta = (await table.schema()).metadata or {}
            have_dim = int(meta.get(META_DIM, b"0") or 0)
            have_name = meta.get(META_EMBEDDER, b"").decode()
            if have_dim != dim or have_name != embedder_name:
                raise StoreMismatch(
                    f"the memories table at {uri} holds {have_dim}-dim vectors from {have_name!r}, but the embedder is "
                    f"{embedder_name!r} ({dim} dims): use the original embedder, or `memgate export` with it and `memgate import` into a new --data-dir, which re-embeds"
                )
            store = cls(db, table, embedder_name, dim)
            await store.migrate()
        else:
            table = await db.create_table(TABLE, schema=schema(dim, embedder_name), exist_ok=True)
            store = cls(db, table, embedder_name, dim)
            await store.ensure_indexes()
        store.scopes.rescan()
        return store

    recorded = staticmethod(tables.recorded)

    async def migrate(self) -> None:
        await tables.migrate(self.table, self.schema)

    async def ensure_indexes(self) -> None:
        await tables.ensure_indexes(self.table, ANN_MIN_ROWS)

    def _arrow(self, memories: list[Memory]) -> pa.Table:
        return to_arrow(memories, self.schema, self.dim)

    def _own(self, version: int | None) -> None:
        if version is not None:
            self.own_versions.add(int(version))

    async def version(self) -> int:
        return int(await self.table.version())

    async def latest(self) -> None:
        """Read every replica's newest commit from now on, not LanceDB's copy of up to READ_CONSISTENCY ago."""
        await self.table.checkout_latest()

    def foreign_commits(self, seen: int, latest: int) -> bool:
        """Whether a commit after `seen` up to `latest` came from someone else (another replica, the CLI)."""
        if latest <= seen:
            return False
        if latest - seen > MAX_VERSION_GAP:
            return True
        return any(v not in self.own_versions for v in range(seen + 1, latest + 1))

    async def _scope_pairs(self) -> pa.Table:
        return await self._read(self.table.query().select(["tenant", "user_id"]))

    async def _query(self, where: str, columns: list[str] | None = None) -> list[Memory]:
        q = self.table.query().where(where)
        if columns is not None:
            q = q.select(columns)
        return rows_to_memories(await self._read(q))

    async def _read(self, query: Any) -> pa.Table:
        # A LanceDB read opens files of every data fragment: unbounded concurrent reads (extraction
        # plans a whole batch of users at once) ran out of file handles under load (bench_load.py).
        async with self._ops:
            return await query.to_arrow()

    async def _write(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        """Run one commit under the same bound as reads, so `erase` can hold them all off; one that lost a race is retried."""
        async with self._ops:
            return await committed(operation)

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """No read or write of this process in flight: old versions can go without failing one."""
        for _ in range(MAX_CONCURRENT_OPS):
            await self._ops.acquire()
        try:
            yield
        finally:
            for _ in range(MAX_CONCURRENT_OPS):
                self._ops.release()

    async def _doomed(self, where: str) -> dict[str, float]:
        """Ids (with creation times) of the rows about to be deleted; their fragments (a row id's high
        32 bits) are noted for `erase`."""
        rows = await self._read(self.table.query().where(where).select(["id", "created_at"]).with_row_id())
        if self._erased is not None:  # None: every fragment is rewritten anyway
            self._erased.update(int(r) >> 32 for r in rows.column("_rowid").to_pylist())
        return dict(zip(rows.column("id").to_pylist(), rows.column("created_at").to_pylist()))

    async def add(self, memories: list[Memory]) -> list[Memory]:
        """Insert in one commit; ids already present are skipped. Returns the rows actually inserted."""
        if not memories:
            return []
        by_scope: dict[tuple[str, str], list[str]] = {}
        for m in memories:
            if m.kind not in STORED_KINDS:
                raise ValueError(f"unknown memory kind {m.kind!r}")
            by_scope.setdefault((m.tenant, m.user_id), []).append(m.id)
        # One query for the whole batch (none for users with no rows yet); every clause is scoped to its own tenant and user.
        by_scope = {key: ids for key, ids in by_scope.items() if await self.scopes.may_have(*key)}
        present: set[tuple[str, str, str]] = set()
        if by_scope:
            clauses = " OR ".join(f"({scope(tenant, user)} AND {one_of('id', ids)})" for (tenant, user), ids in by_scope.items())
            rows = await self._read(self.table.query().where(clauses).select(["id", "tenant", "user_id"]))
            present = set(zip(rows.column("tenant").to_pylist(), rows.column("user_id").to_pylist(), rows.column("id").to_pylist()))
        fresh = list({(m.tenant, m.user_id, m.id): m for m in memories if (m.tenant, m.user_id, m.id) not in present}.values())
        if fresh:
            # An append, not a merge-insert: it never conflicts with another replica's commit nor scans the
            # table for the join; the read-back settles an id two writers inserted at once. Ids are per
            # (tenant, user): an id another user happens to hold (an import, say) is not looked at.
            result = await self._write(lambda: self.table.add(self._arrow(fresh)))
            self._own(result.version)
            self.scopes.note((m.tenant, m.user_id) for m in fresh)
            fresh = await self._first_wins(fresh)
        return fresh

    async def _first_wins(self, written: list[Memory]) -> list[Memory]:
        """Those of `written` that are the stored row for their id (see `first_stamps`); the others' rows are deleted,
        their fragments noted for `erase` like every delete's."""
        where = " OR ".join(f"({scope(m.tenant, m.user_id)} AND id = {sql_literal(m.id)})" for m in written)
        rows = await self._read(self.table.query().where(where).select(["id", "tenant", "user_id", "created_at"]).with_row_id())
        keys = list(zip(rows.column("tenant").to_pylist(), rows.column("user_id").to_pylist(), rows.column("id").to_pylist()))
        row_ids, created = rows.column("_rowid").to_pylist(), rows.column("created_at").to_pylist()
        first = first_stamps(keys, row_ids, created)
        lost = {(m.tenant, m.user_id, m.id): m for m in written if first.get((m.tenant, m.user_id, m.id), m.created_at) != m.created_at}
        if self._erased is not None:
            self._erased.update(row >> 32 for key, row, at in zip(keys, row_ids, created) if key in lost and lost[key].created_at == at)
        for m in lost.values():
            where = f"{scope(m.tenant, m.user_id)} AND id = {sql_literal(m.id)} AND created_at = {m.created_at!r}"
            self._own((await self._write(lambda: self.table.delete(where))).version)
        return [m for m in written if (m.tenant, m.user_id, m.id) not in lost]

    async def holders(self, ids: list[str]) -> dict[str, set[tuple[str, str]]]:
        """The (tenant, user) pairs holding each of these ids, across scopes (import keeps ids global); only the pairs are read."""
        if not ids:
            return {}
        rows = await self._read(self.table.query().where(one_of("id", set(ids))).select(["id", "tenant", "user_id"]))
        found: dict[str, set[tuple[str, str]]] = {}
        for mid, tenant, user in zip(rows.column("id").to_pylist(), rows.column("tenant").to_pylist(), rows.column("user_id").to_pylist()):
            found.setdefault(mid, set()).add((tenant, user))
        return found

    async def get(self, tenant: str, user: str, id: str) -> Memory | None:
        found = await self._query(f"{scope(tenant, user)} AND id = {sql_literal(id)}")
        return found[0] if found else None

    async def update(self, tenant: str, user: str, id: str, **changes: Any) -> Memory | None:
        """Set only the given fields, in one commit; returns the row as it is afterwards (None if absent).

        Never a whole row from an earlier read: that would undo whatever committed in between
        (a supersede, a use count), resurrecting a replaced memory."""
        unknown = set(changes) - set(COLUMNS) | ({"id", "tenant", "user_id"} & set(changes))
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        values = {name: ([float(x) for x in value] if name == "vector" else value) for name, value in changes.items()}
        where = f"{scope(tenant, user)} AND id = {sql_literal(id)}"
        result = await self._write(lambda: self.table.update(values, where=where))
        self._own(result.version)
        return await self.get(tenant, user, id) if result.rows_updated else None

    async def supersede(self, tenant: str, user: str, old_id: str, new_id: str) -> bool:
        """Mark `old_id` replaced by `new_id` unless something replaced it first (here or on another
        replica: LanceDB re-runs the condition on the newest version when commits race). True if it was done."""
        where = f"{scope(tenant, user)} AND id = {sql_literal(old_id)} AND superseded_by IS NULL"
        result = await self._write(lambda: self.table.update({"superseded_by": new_id}, where=where))
        self._own(result.version)
        return bool(result.rows_updated)

    async def revive(self, tenant: str, user: str, id: str, at: float) -> Memory | None:
        """Make a superseded memory active again (the user said it again; one held for a confirmation stays held):
        the row as it is afterwards, or None."""
        where = f"{scope(tenant, user)} AND id = {sql_literal(id)} AND superseded_by IS NOT NULL AND superseded_by NOT LIKE '{PENDING}%'"
        result = await self._write(lambda: self.table.update({"superseded_by": None, "updated_at": at}, where=where))
        self._own(result.version)
        return await self.get(tenant, user, id) if result.rows_updated else None

    async def delete(self, tenant: str, user: str, ids: list[str], *, still: str | None = None) -> list[str]:
        """Delete those of `ids` that (still) match the condition `still`; returns the ids deleted. A remover that
        planned from an earlier read passes its reason as `still`, so a row changed since (pinned, used) is kept."""
        return sorted(await self.delete_rows(tenant, user, ids, still=still))

    async def delete_rows(self, tenant: str, user: str, ids: list[str], *, still: str | None = None) -> dict[str, float]:
        """`delete`, answering each deleted id with its row's creation time (what names its removal in the history)."""
        if not ids:
            return {}
        where = f"{scope(tenant, user)} AND {one_of('id', ids)}" + (f" AND ({still})" if still else "")
        present = await self._doomed(where)
        if not present:
            return {}
        result = await self._write(lambda: self.table.delete(where))
        self._own(result.version)
        # A row that stopped matching between the read and the delete is still there: not deleted.
        kept = await self._read(self.table.query().where(f"{scope(tenant, user)} AND {one_of('id', sorted(present))}").select(["id"]))
        still_there = set(kept.column("id").to_pylist())
        return {mid: created for mid, created in present.items() if mid not in still_there}

    async def active(self, tenant: str, user: str) -> list[Memory]:
        """A user's memories that are not superseded (or only held back for a confirmation), every agent's, with vectors
        (the hot tier filters by agent)."""
        return (await self.active_of([(tenant, user)]))[(tenant, user)]

    async def active_of(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[Memory]]:
        """`active` for several users in one read: a read opens every unindexed fragment (a GET each on object storage)."""
        clauses = " OR ".join(f"({scope(tenant, user)})" for tenant, user in keys)
        found: dict[tuple[str, str], list[Memory]] = {key: [] for key in keys}
        for m in await self._query(f"({clauses}) AND (superseded_by IS NULL OR superseded_by LIKE '{PENDING}%')"):
            found.setdefault((m.tenant, m.user_id), []).append(m)
        return found

    async def list(
        self, tenant: str, user: str, *, limit: int = 50, cursor: str | None = None, kind: str | None = None, include_superseded: bool = False,
        tier: str | None = None,
    ) -> tuple[list[Memory], str | None]:
        """Newest first, `limit` at a time; pass the returned cursor back for the next page."""
        where = scope(tenant, user)
        if kind is not None:
            where += f" AND kind = {sql_literal(kind)}"
        # Without a tier: what memgate derived (core, recall); the user's verbatim episodes are asked for by name.
        where += f" AND tier = {sql_literal(tier)}" if tier is not None else " AND (tier IS NULL OR tier <> 'archival')"
        if not include_superseded:
            where += " AND superseded_by IS NULL"
        if cursor is not None:
            created, mid = cursor_decode(cursor)
            where += f" AND (created_at < {created!r} OR (created_at = {created!r} AND id > {sql_literal(mid)}))"
        columns = [c for c in COLUMNS if c != "vector"]
        rows = sorted(await self._query(where, columns), key=lambda m: (-m.created_at, m.id))
        page = rows[:limit]
        return page, (cursor_encode(page[-1]) if len(rows) > limit else None)

    async def rows(self, tenant: str, user: str, *, vectors: bool = False) -> list[Memory]:
        """Every row of one user, superseded ones too, oldest first (export and hygiene)."""
        columns = None if vectors else [c for c in COLUMNS if c != "vector"]
        return sorted(await self._query(scope(tenant, user), columns), key=lambda m: (m.created_at, m.id))

    async def ids(self, tenant: str, user: str) -> set[str]:
        """Ids of every row of one user, superseded ones too."""
        return set((await self._read(self.table.query().where(scope(tenant, user)).select(["id"]))).column("id").to_pylist())

    async def _distinct(self, column: str, where: str | None = None) -> list[str]:
        q = self.table.query().select([column])
        if where:
            q = q.where(where)
        values = (await self._read(q)).column(column)
        return sorted(v for v in pc.unique(values).to_pylist() if v is not None)

    async def activity(self) -> pa.Table:
        """tenant, user_id, updated_at and last_used_at of every active memory (the start-up prefetch ranks users by them)."""
        return await self._read(self.table.query().where("superseded_by IS NULL").select(["tenant", "user_id", "updated_at", "last_used_at"]))

    async def tenants(self) -> list[str]:
        return await self._distinct("tenant")

    async def users(self, tenant: str) -> list[str]:
        return await self._distinct("user_id", scope(tenant))

    async def count(self, tenant: str, user: str) -> int:
        return int(await self.table.count_rows(scope(tenant, user)))

    async def fold_usage(self, usage: dict[tuple[str, str, str], tuple[int, float]]) -> None:
        """Add recall counts to `use_count` and set `last_used_at`, keyed by (tenant, user, id): one commit."""
        by_scope: dict[tuple[str, str], list[str]] = {}
        for tenant, user, mid in usage:
            by_scope.setdefault((tenant, user), []).append(mid)
        keys: list[tuple[str, str, str]] = []
        counts: list[int] = []
        for (tenant, user), ids in by_scope.items():
            rows = await self._read(self.table.query().where(f"{scope(tenant, user)} AND {one_of('id', ids)}").select(["id", "use_count"]))
            for mid, count in zip(rows.column("id").to_pylist(), rows.column("use_count").to_pylist()):
                keys.append((tenant, user, mid))
                counts.append(int(count or 0) + usage[(tenant, user, mid)][0])
        if not keys:
            return
        part = pa.table(
            {
                "id": pa.array([k[2] for k in keys], pa.string()),
                "tenant": pa.array([k[0] for k in keys], pa.string()),
                "user_id": pa.array([k[1] for k in keys], pa.string()),
                "use_count": pa.array(counts, pa.int64()),
                "last_used_at": pa.array([usage[k][1] for k in keys], pa.float64()),
            }
        )
        # Only the two usage columns: a partial merge leaves every other field (superseded_by) as committed.
        result = await self._write(lambda: self.table.merge_insert(["id", "tenant", "user_id"]).when_matched_update_all().execute(part))
        self._own(result.version)

    async def forget_user(self, tenant: str, user: str) -> int:
        if not await self._doomed(scope(tenant, user)):
            return 0
        result = await self._write(lambda: self.table.delete(scope(tenant, user)))
        self._own(result.version)
        return int(result.num_deleted_rows)

    async def erase(self) -> bool:
        """Make removed rows leave the disk: rewrite the fragments that hold deleted rows (compaction
        leaves a fragment with under 10% deleted as it is), rebuild the full-text index, then drop
        every old version. False when nothing was removed since the last erase."""
        fragments, self._erased = self._erased, set()
        if fragments is not None and not fragments:
            return False
        before = await self.version()
        try:
            # Rewriting a fragment's live rows leaves it with none: LanceDB drops a fragment wholly deleted.
            ranges = [None] if fragments is None else [f"_rowid >= {f << 32} AND _rowid < {(f + 1) << 32}" for f in sorted(fragments)]
            for where in ranges:
                await self._write(lambda: self.table.update(updates_sql={"id": "id"}, where=where))
            await self._write(lambda: self.table.create_index("text", config=FTS(), replace=True))
            # Compaction and index upkeep first, alongside other work (tens of seconds with a vector index
            # over 100k rewritten rows); held exclusive, the second call only drops old versions.
            await self._write(lambda: self.table.optimize())
            async with self._exclusive():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # lancedb warns that older versions go: that is the point
                    await self.table.optimize(cleanup_older_than=ERASE)
        except BaseException:
            self._erased = None if fragments is None or self._erased is None else self._erased | fragments  # retried next time
            raise
        finally:
            await self._maintained(before)
        return True

    async def optimize(self) -> None:
        """Compact fragments, fold new rows into the indexes, drop old versions; add the ANN index when due."""
        before = await self.version()
        try:
            await self.ensure_indexes()
            await self._write(lambda: self.table.optimize(cleanup_older_than=timedelta(minutes=10)))
        finally:
            await self._maintained(before)

    async def _maintained(self, before: int) -> None:
        # Compaction, rewrites and index commits change no memory: hot tiers need not reload for them.
        self.own_versions.update(range(before + 1, await self.version() + 1))

    async def aclose(self) -> None:
        await self.scopes.aclose()
        self.table.close()
        self.db.close()


__all__ = ["MemoryStore", "sql_literal", "scope", "one_of"]

