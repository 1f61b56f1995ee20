"""The store on a real LanceDB table in a temp dir: scoping, escaping, idempotent adds, dimension safety,
and writes that never undo one another (two stores on one table stand for two replicas)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest

from gateway.memory.hygiene import plan, still
from gateway.memory.records import Memory, StoreMismatch
from gateway.rules import RuleSettings
from gateway.memory.store import MemoryStore

HOSTILE = "x' OR '1'='1"


def memory(tenant: str, user: str, text: str, dim: int = 8) -> Memory:
    vector = np.random.default_rng(len(text)).random(dim, dtype=np.float32)
    return Memory(id=str(uuid.uuid4()), tenant=tenant, user_id=user, text=text, vector=vector / np.linalg.norm(vector), created_at=1.0)


def run(coro):
    return asyncio.run(coro)


def test_a_quote_laden_user_id_is_a_literal_not_sql(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await MemoryStore.open(str(tmp_path / "db"), "test", 8)
        await store.add([memory("t", "bob", "bob's secret"), memory("t", HOSTILE, "hostile's own"), memory(HOSTILE, "bob", "other tenant")])
        assert [m.text for m in await store.active("t", HOSTILE)] == ["hostile's own"]
        assert [m.text for m in (await store.list("t", HOSTILE))[0]] == ["hostile's own"]
        assert await store.users("t") == sorted(["bob", HOSTILE])
        assert [m.text for m in await store.active(HOSTILE, "bob")] == ["other tenant"]
        assert await store.forget_user("t", HOSTILE) == 1
        assert [m.text for m in await store.active("t", "bob")] == ["bob's secret"]
        await store.aclose()

    run(scenario())


def test_adding_the_same_ids_again_inserts_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await MemoryStore.open(str(tmp_path / "db"), "test", 8)
        batch = [memory("t", "u", f"fact {i}") for i in range(5)]
        assert len(await store.add(batch)) == 5
        assert await store.add(batch) == []
        assert len(await store.add(batch[:2] + [memory("t", "u", "new")])) == 1
        assert await store.count("t", "u") == 6
        await store.aclose()

    run(scenario())


def test_reads_never_cross_users_or_tenants(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await MemoryStore.open(str(tmp_path / "db"), "test", 8)
        mine = memory("t1", "u", "mine")
        await store.add([mine, memory("t1", "v", "other user"), memory("t2", "u", "other tenant")])
        assert await store.get("t1", "v", mine.id) is None and await store.get("t2", "u", mine.id) is None
        assert await store.delete("t2", "u", [mine.id]) == []
        assert await store.update("t1", "v", mine.id, text="stolen") is None
        assert (await store.get("t1", "u", mine.id)).text == "mine"
        await store.aclose()

    run(scenario())


def test_a_table_never_mixes_embedders_or_dimensions(tmp_path: Path) -> None:
    async def scenario() -> None:
        await (await MemoryStore.open(str(tmp_path / "db"), "model-a", 8)).aclose()
        with pytest.raises(StoreMismatch):
            await MemoryStore.open(str(tmp_path / "db"), "model-a", 16)
        with pytest.raises(StoreMismatch):
            await MemoryStore.open(str(tmp_path / "db"), "model-b", 8)
        store = await MemoryStore.open(str(tmp_path / "db"), "model-a", 8)
        with pytest.raises(StoreMismatch):
            await store.add([memory("t", "u", "wrong dims", dim=4)])
        await store.aclose()

    run(scenario())


async def eventually(check, timeout: float = 15.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def test_the_scope_directory_never_calls_a_user_with_rows_empty(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = str(tmp_path / "db")
        first = await MemoryStore.open(path, "test", 8)
        await first.add([memory("t", "known", "a fact")])
        second = await MemoryStore.open(path, "test", 8)  # another replica, or this one restarted
        assert await second.scopes.may_have("t", "known")  # before its scan finishes it is unsure, so "maybe"

        async def scanned() -> bool:
            return second.scopes.seen is not None

        assert await eventually(scanned)
        assert await second.scopes.may_have("t", "known")
        assert not await second.scopes.may_have("t", "stranger") and not await second.scopes.may_have("other", "known")
        await second.add([memory("t", "own", "written here")])
        assert await second.scopes.may_have("t", "own")  # its own writes count at once
        await first.add([memory("t", "stranger", "written by the other replica")])

        async def sees_stranger() -> bool:
            return await second.scopes.may_have("t", "stranger")

        assert await eventually(sees_stranger)  # within the revalidation interval plus a rescan
        assert [m.text for m in await second.active("t", "stranger")] == ["written by the other replica"]
        await first.aclose()
        await second.aclose()

    run(scenario())


def test_an_update_or_usage_fold_from_an_earlier_read_never_undoes_a_supersede(tmp_path: Path) -> None:
    """Replica A reads a memory (as an admin PATCH or a usage fold does), replica B supersedes it,
    then A writes: the memory stays superseded (a whole-row write from A's read used to resurrect it)."""

    async def scenario() -> None:
        uri = str(tmp_path / "db")
        a = await MemoryStore.open(uri, "test", 8)
        old = memory("t", "u", "User lives in Lima")
        await a.add([old])
        b = await MemoryStore.open(uri, "test", 8)
        assert (await a.get("t", "u", old.id)).superseded_by is None  # A's read, before B's commit
        await b.supersede("t", "u", old.id, "successor")
        updated = await a.update("t", "u", old.id, pinned=True, confidence=0.5)
        assert updated is not None and (updated.pinned, updated.confidence, updated.superseded_by) == (True, 0.5, "successor")
        await a.fold_usage({("t", "u", old.id): (3, 1234.5)})
        fresh = await MemoryStore.open(uri, "test", 8)
        row = await fresh.get("t", "u", old.id)
        assert (row.superseded_by, row.pinned, row.use_count, row.last_used_at, row.text) == ("successor", True, 3, 1234.5, "User lives in Lima")
        assert [m.id for m in await fresh.active("t", "u")] == []
        for store in (a, b, fresh):
            await store.aclose()

    run(scenario())


def test_hygiene_never_deletes_a_memory_pinned_after_it_planned(tmp_path: Path) -> None:
    """The pass plans from a read; a pin committed before its delete keeps the memory."""

    async def scenario() -> None:
        uri = str(tmp_path / "db")
        hygiene = await MemoryStore.open(uri, "test", 8)
        rows = [memory("t", "u", f"fact number {i}") for i in range(4)]
        await hygiene.add(rows)
        rule = RuleSettings(max_memories=2)
        doomed = plan(await hygiene.rows("t", "u"), rule, 0, 10.0)["cap"]
        assert len(doomed) == 2
        admin = await MemoryStore.open(uri, "test", 8)
        await admin.update("t", "u", doomed[0].id, pinned=True)
        deleted = await hygiene.delete("t", "u", [m.id for m in doomed], still=still("cap", rule, 10.0))
        assert deleted == [doomed[1].id]
        assert (await hygiene.get("t", "u", doomed[0].id)).pinned is True
        assert await hygiene.count("t", "u") == 3
        for store in (hygiene, admin):
            await store.aclose()

    run(scenario())


def test_a_table_from_before_tiers_gains_them_by_kind_and_pin_and_takes_new_rows(tmp_path: Path) -> None:
    """The migration: a table written without `tier` and `source_episode` opens with both, old rows core or recall."""
    import lancedb
    import pyarrow as pa

    from gateway.memory.records import schema, to_arrow

    async def scenario() -> None:
        uri = str(tmp_path / "db")
        full = schema(8, "test")
        old = pa.schema([f for f in full if f.name not in ("tier", "source_episode")], metadata=full.metadata)
        rows = [memory("t", "u", "a fact"), memory("t", "u", "a preference"), memory("t", "u", "a pinned fact")]
        rows[1].kind, rows[2].pinned = "preference", True
        db = await lancedb.connect_async(uri)
        await db.create_table("memories", data=to_arrow(rows, full, 8).select(old.names).cast(old))
        db.close()
        store = await MemoryStore.open(uri, "test", 8)
        assert {m.text: m.tier for m in await store.active("t", "u")} == {"a fact": "recall", "a preference": "core", "a pinned fact": "core"}
        episode = memory("t", "u", "I said this")
        episode.tier, episode.kind = "archival", "note"
        await store.add([episode])
        assert [m.text for m in (await store.list("t", "u", tier="archival"))[0]] == ["I said this"]
        assert "I said this" not in [m.text for m in (await store.list("t", "u"))[0]]  # plain listing: core and recall
        await store.aclose()

    run(scenario())


def test_two_stores_inserting_the_same_id_at_once_keep_one_row_and_agree_who_wrote_it(tmp_path: Path) -> None:
    """Two replicas learning one fact at once: LanceDB lets both inserts commit; the store keeps the
    first row and only its writer reports it inserted (so one history `add`)."""

    async def scenario() -> None:
        path = str(tmp_path / "db")
        first = await MemoryStore.open(path, "test", 8)
        second = await MemoryStore.open(path, "test", 8)
        for round_ in range(5):
            a, b = memory("t", "u", f"fact {round_}"), memory("t", "u", f"fact {round_}")
            b.id, b.created_at = a.id, 2.0
            inserted = await asyncio.gather(first.add([a]), second.add([b]))
            assert sum(len(x) for x in inserted) == 1
            await first.table.checkout_latest()  # past the read consistency interval: the other store's delete included
            [kept] = [m for m in await first.rows("t", "u") if m.id == a.id]
            assert kept.created_at == (inserted[0] or inserted[1])[0].created_at and await first.count("t", "u") == round_ + 1
        await first.aclose()
        await second.aclose()

    run(scenario())


def test_history_kept_in_sqlite_by_an_older_release_moves_into_the_shared_table_once(tmp_path: Path) -> None:
    from gateway.memory.history import History
    from gateway.sqlite import open_db

    async def scenario() -> None:
        db = await open_db(tmp_path / "memgate.sqlite3")
        for action, text in (("add", "I like tea"), ("update", "I like green tea")):
            await db.execute("INSERT INTO history (tenant, user_id, memory_id, action, old_text, new_text, cause, at, tier) VALUES ('t','u','m1',?,NULL,?,'admin',?,'recall')",
                             (action, text, 10.0 if action == "add" else 20.0))
        store = await MemoryStore.open(str(tmp_path / "db"), "test", 8)
        history = await History.open(store.db)
        assert await history.adopt(db) == 2
        assert await history.adopt(db) == 0  # the SQLite rows are gone: nothing moves twice
        assert [(h["action"], h["new_text"], h["at"], h["tier"]) for h in await history.for_memory("t", "u", "m1")] == [
            ("add", "I like tea", 10.0, "recall"), ("update", "I like green tea", 20.0, "recall")]
        history.close()
        await store.aclose()
        await db.close()

    run(scenario())


def test_two_replicas_recording_one_removal_at_once_keep_one_event_and_count_it_once(tmp_path: Path) -> None:
    """The history's once-only events (an add, a removal) are appended and read back: two writers at
    once leave one row, and exactly one of them reports it new (what the metrics count)."""
    from gateway.memory.history import Event, History

    async def scenario() -> None:
        path = str(tmp_path / "db")
        first = await MemoryStore.open(path, "test", 8)
        second = await MemoryStore.open(path, "test", 8)
        histories = [await History.open(first.db), await History.open(second.db)]
        for round_ in range(5):
            event = Event("t", "u", f"m{round_}", "delete", None, None, "hygiene", created=float(round_))
            counts = await asyncio.gather(*(h.record([event]) for h in histories))
            assert sorted(counts) == [0, 1]
            await histories[0].table.checkout_latest()
            assert [h["action"] for h in await histories[0].for_memory("t", "u", f"m{round_}")] == ["delete"]
            assert await histories[1].record([event]) == 0  # a replay later: nothing new
        for h in histories:
            h.close()
        await first.aclose()
        await second.aclose()

    run(scenario())


def test_an_extraction_batch_warms_its_users_in_one_read_each_with_only_its_own_rows(tmp_path: Path) -> None:
    """`warm_many` loads several cold users with one scoped read (object storage pays a GET per fragment
    per read); each entry holds that user's active rows only, and a user with none is cached empty."""
    from gateway.memory.hot import HotTier
    from gateway.metrics import Metrics

    async def scenario() -> None:
        store = await MemoryStore.open(str(tmp_path / "db"), "test", 8)
        await store.add([memory("t", "ann", "ann's fact"), memory("t", HOSTILE, "hostile's fact"), memory("u", "ann", "other tenant's ann")])
        reads = 0
        real_read = store._read

        async def counted(query):
            nonlocal reads
            reads += 1
            return await real_read(query)

        store._read = counted  # count store reads (the real ones run)
        metrics = Metrics()
        hot = HotTier(store, 10, metrics)
        await hot.warm_many([("t", "ann"), ("t", HOSTILE), ("t", "nobody")])
        assert reads == 1
        assert [m.text for m in (await hot.get("t", "ann")).memories] == ["ann's fact"]
        assert [m.text for m in (await hot.get("t", HOSTILE)).memories] == ["hostile's fact"]
        assert len(await hot.get("t", "nobody")) == 0
        assert metrics.hot_tier.labels("miss")._value.get() == 0 and metrics.hot_tier.labels("hit")._value.get() == 3
        await store.aclose()

    run(scenario())
