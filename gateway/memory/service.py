"""The memory service every writer goes through: store + embedder + hot tier, kept coherent."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Mapping, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from gateway.memory import tokens
from gateway.config import Settings
from gateway.memory.confirmations import Asked
from gateway.memory.history import Event, History
from gateway.memory.hot import HotTier
from gateway.memory.maintenance import maintain
from gateway.memory.poisoning import looks_like_instruction  # the one shared detector (extraction and admin writes)
from gateway.metrics import Metrics
from gateway.memory.recall import Query, rank
from gateway.memory.records import STORED_KINDS, TIERS, Memory, tier_for
from gateway.memory.redaction import redact, redact_all
from gateway.memory.store import MemoryStore
from gateway.memory.tombstones import Tombstones
from gateway.memory.userlocks import Key, UserLocks

log = logging.getLogger("memgate.memory")


class Embedder(Protocol):
    name: str
    dim: int

    async def embed(self, texts: list[str]) -> np.ndarray: ...

    async def aclose(self) -> None: ...


def new_id() -> str:
    return str(uuid.uuid4())


def text_facts(texts: list[str]) -> list[tuple[int, bool]]:
    """Each text's token count and whether it reads as an instruction: CPU work, for a thread."""
    return [(tokens.count(text), looks_like_instruction(text)) for text in texts]


class MemoryService:
    """Owns store, embedder and hot tier; every write goes through here so the hot tier stays coherent."""

    def __init__(
        self, store: MemoryStore, embedder: Embedder, metrics: Metrics, hot_users: int, tombstones: Tombstones, history: History | None = None,
    ) -> None:
        # Recall's matrix-vector products are small: a second BLAS thread only fights the event loop and
        # the other workers for the cores (measured 1 ms single-threaded vs 2-5 ms with 2 threads, 10k x 256).
        threadpool_limits(1, user_api="blas")
        self.store = store
        self.embedder = embedder
        self.metrics = metrics
        self.hot = HotTier(store, hot_users, metrics, tombstones)
        self.tombstones = tombstones
        self.locks = UserLocks()
        self.history = history  # None only where no change is recorded (benchmarks)
        self._usage: dict[tuple[str, str, str], tuple[int, float]] = {}
        self.asked = Asked()  # which requests carried each pending confirmation
        self.commits = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: Settings, metrics: Metrics, http_client: Any = None) -> MemoryService:
        """Embedder, then the store (its recorded dimension must match), inside the running loop: never before a fork;
        every change is recorded in the store's `history` table."""
        from gateway.memory.embed import make_embedder

        embedder = await asyncio.to_thread(
            make_embedder, settings.embedder, http_client=http_client, upstream_base=settings.upstream_base,
            api_key=settings.extraction_api_key, model=settings.embedding_model,
        )
        if not embedder.dim:  # a remote embedder: the table knows its dimension, else ask the embedder once
            recorded = await MemoryStore.recorded(settings.lancedb_uri)
            if recorded is not None and recorded[0] == embedder.name:
                embedder.dim = recorded[1]
            else:
                await embedder.embed(["dimension probe"])
        store = await MemoryStore.open(settings.lancedb_uri, embedder.name, embedder.dim, cache_mb=settings.store_cache_mb)
        service = cls(store, embedder, metrics, settings.hot_users, await Tombstones.open(store.db), await History.open(store.db))
        service.start()
        return service

    # -- writes ------------------------------------------------------------------------------------

    async def _record(self, events: list[Event]) -> int:
        """Record and count changes (one commit per action); returns how many another replica had not recorded (`Event`)."""
        new = 0
        for action in dict.fromkeys(e.action for e in events):
            group = [e for e in events if e.action == action]
            count = await self.history.record(group) if self.history is not None else len(group)
            self.metrics.memories_written.labels(action).inc(count)
            new += count
        return new

    @staticmethod
    def _event(m: Memory, action: str, old: str | None, new: str | None, cause: str) -> Event:
        """One change of a memory, carrying the memory's tier."""
        return Event(m.tenant, m.user_id, m.id, action, old, new, cause, tier=m.tier)

    async def _prepare(self, memories: list[Memory]) -> None:
        """Fill what a writer may leave out: vector, token count, timestamps, tier, the instruction flag;
        mask secrets in the text first (every tier, every writer)."""
        now = time.time()
        for m in memories:
            if m.tier is not None and m.tier not in TIERS:
                raise ValueError(f"unknown memory tier {m.tier!r}")
            m.tier = tier_for(m.kind, m.pinned, m.tier)
        for m, text in zip(memories, await asyncio.to_thread(redact_all, [m.text for m in memories])):
            if text != m.text:
                m.text, m.vector = text, None  # a vector of the unmasked text would still carry the secret
        missing = [m for m in memories if m.vector is None]
        if missing:
            for m, vector in zip(missing, await self.embedder.embed([m.text for m in missing])):
                m.vector = vector
        for m in memories:
            if m.kind not in STORED_KINDS:
                raise ValueError(f"unknown memory kind {m.kind!r}")
        facts = await asyncio.to_thread(text_facts, [m.text for m in memories])
        for m, (count, instruction) in zip(memories, facts):
            m.tokens = m.tokens or count
            m.created_at = m.created_at or now
            m.updated_at = m.updated_at or m.created_at
            if not m.flagged and instruction:
                m.flagged = True
                self.metrics.flagged_memories.inc()

    async def _forgotten(self, learned: Mapping[Key, float] | None) -> set[Key]:
        """Users forgotten at or after `learned[user]` (when the exchange a write comes from was
        enqueued), on any replica: such a write is dropped. Call with the users' locks held."""
        if not learned:
            return set()
        gone = {key for key, at in (await self.tombstones.since(learned)).items() if learned[key] <= at}
        if gone:
            log.info("dropped a write learned before its user was forgotten", extra={"users": len(gone)})
        return gone

    async def write(
        self, memories: list[Memory], cause: str | Mapping[str, str] = "extraction", *, learned: Mapping[Key, float] | None = None,
    ) -> list[Memory]:
        """Add memories in one commit; returns those actually inserted (replayed ids, and ids another
        replica inserted first, are skipped). `cause` may map memory ids to causes (one extraction
        commit spans several jobs); with `learned`, a user forgotten since is skipped (see `_forgotten`)."""
        if not memories:
            return []
        await self._prepare(memories)
        async with self.locks.hold((m.tenant, m.user_id) for m in memories):
            gone = await self._forgotten(learned)
            inserted = await self.store.add([m for m in memories if (m.tenant, m.user_id) not in gone])
            self.commits += 1
            self.hot.added(inserted)
            for m in inserted:
                self.metrics.memories_stored.labels(m.tier).inc()
            await self._record([Event(m.tenant, m.user_id, m.id, "add", None, m.text, cause if isinstance(cause, str) else cause.get(m.id, "extraction"),
                                      created=m.created_at, tier=m.tier) for m in inserted])
            if learned and inserted:
                inserted = await self._undo_forgotten(inserted, learned)
        return inserted

    async def _undo_forgotten(self, inserted: list[Memory], learned: Mapping[Key, float]) -> list[Memory]:
        """Check the tombstones again after the commit: a forget on another replica that landed between
        our check and our commit missed these rows (its delete ran first), so they go now."""
        gone = await self._forgotten({key: at for key, at in learned.items() if key in {(m.tenant, m.user_id) for m in inserted}})
        for tenant, user in gone:
            ids = [m.id for m in inserted if (m.tenant, m.user_id) == (tenant, user)]
            await self.store.delete(tenant, user, ids)
            self.hot.removed(tenant, user, ids)
            if self.history is not None:
                await self.history.forget_memories(tenant, user, ids)
        return [m for m in inserted if (m.tenant, m.user_id) not in gone]

    async def revive(self, tenant: str, user: str, id: str, cause: str, *, learned: float | None = None) -> Memory | None:
        """Make a superseded memory active again: the user said it again (its id is its text's)."""
        async with self.locks.hold([(tenant, user)]):
            if await self._forgotten(None if learned is None else {(tenant, user): learned}):
                return None
            revived = await self.store.revive(tenant, user, id, time.time())
            self.commits += 1
            if revived is not None:
                self.hot.updated(revived)
                await self._record([self._event(revived, "refresh", None, revived.text, cause)])
        return revived

    async def update(
        self, tenant: str, user: str, id: str, *, text: str | None = None, kind: str | None = None,
        pinned: bool | None = None, confidence: float | None = None, cause: str, action: str = "update", learned: float | None = None,
    ) -> Memory | None:
        """Change only the given fields (never the rest of a row read earlier); None when absent or
        when the user was forgotten after `learned`."""
        current = await self.store.get(tenant, user, id)
        if current is None:
            return None
        changes: dict[str, Any] = {"updated_at": time.time()}
        if kind is not None:
            if kind not in STORED_KINDS:
                raise ValueError(f"unknown memory kind {kind!r}")
            changes["kind"] = kind
        if pinned is not None:
            changes["pinned"] = pinned
        if kind is not None or pinned is not None:
            changes["tier"] = tier_for(changes.get("kind", current.kind), changes.get("pinned", current.pinned), current.tier)
        if confidence is not None:
            changes["confidence"] = confidence
        text = None if text is None else await asyncio.to_thread(redact, text)
        if text is not None and text != current.text:
            [(count, instruction)] = await asyncio.to_thread(text_facts, [text])
            changes.update(text=text, vector=(await self.embedder.embed([text]))[0], tokens=count, flagged=instruction)
        async with self.locks.hold([(tenant, user)]):
            if await self._forgotten(None if learned is None else {(tenant, user): learned}):
                return None
            updated = await self.store.update(tenant, user, id, **changes)
            self.commits += 1
            if updated is None:
                return None
            self.hot.updated(self.with_usage([updated])[0])  # recalls not yet folded in still count
            await self._record([self._event(updated, action, current.text, updated.text, cause)])  # action: update, or refresh (a restatement)
        return updated

    async def supersede(
        self, tenant: str, user: str, old_id: str, new_id: str, cause: str, new_text: str | None = None, *, learned: float | None = None,
    ) -> None:
        async with self.locks.hold([(tenant, user)]):
            old = await self.store.get(tenant, user, old_id)
            if old is None or await self._forgotten(None if learned is None else {(tenant, user): learned}):
                return
            done = await self.store.supersede(tenant, user, old_id, new_id)
            self.commits += 1
            self.hot.removed(tenant, user, [old_id])
            if done:  # else another writer superseded it first, and recorded it
                await self._record([self._event(old, "supersede", old.text, new_text, cause)])
            await self._retire_episode(old, new_id, new_text, cause)

    async def _retire_episode(self, fact: Memory, successor_id: str, new_text: str | None, cause: str) -> None:
        """The user's own words that stated a retired fact must not bring it back through the archival tier (under the user's lock)."""
        tenant, user = fact.tenant, fact.user_id
        episode = await self.store.get(tenant, user, fact.source_episode) if fact.source_episode else None
        if episode is not None and episode.superseded_by is None:
            done = await self.store.supersede(tenant, user, episode.id, successor_id)
            self.hot.removed(tenant, user, [episode.id])
            if done:
                await self._record([self._event(episode, "supersede", episode.text, new_text, cause)])

    async def ask_to_confirm(self, stored: Memory, said: Memory, cause: str, *, learned: float | None = None) -> None:
        """Record that `said` (written held back) waits for the user to confirm it over `stored`."""
        async with self.locks.hold([(stored.tenant, stored.user_id)]):
            if not await self._forgotten(None if learned is None else {(stored.tenant, stored.user_id): learned}):
                await self._record([self._event(stored, "confirm", stored.text, said.text, f"{cause}:asked")])

    async def settle(self, stored: Memory, said: Memory, keep_said: bool, cause: str, *, learned: float | None = None) -> None:
        """The user answered a confirmation: keep what they newly said (it supersedes the stored memory) or the
        stored memory (the held-back one is deleted). Each step is recorded in the history."""
        tenant, user = stored.tenant, stored.user_id
        self.asked.settled(said.id)
        async with self.locks.hold([(tenant, user)]):
            if await self._forgotten(None if learned is None else {(tenant, user): learned}):
                return
            await self._record([self._event(said if keep_said else stored, "confirm", stored.text, said.text, f"{cause}:{'yes' if keep_said else 'no'}")])
            if keep_said:
                released = await self.store.update(tenant, user, said.id, superseded_by=None, updated_at=time.time())
                self.commits += 1
                if released is None:
                    return
                self.hot.updated(self.with_usage([released])[0])
        if keep_said:
            await self.supersede(tenant, user, stored.id, said.id, f"{cause}:yes", said.text, learned=learned)
        else:
            await self.remove(tenant, user, [said.id], "delete", f"{cause}:no")
            async with self.locks.hold([(tenant, user)]):
                await self._retire_episode(said, stored.id, stored.text, f"{cause}:no")

    async def delete(self, tenant: str, user: str, id: str, cause: str) -> bool:
        return await self.remove(tenant, user, [id], "delete", cause) == 1

    async def remove(self, tenant: str, user: str, ids: list[str], action: str, cause: str, *, still: str | None = None) -> int:
        """Delete several of one user's memories in one commit, recording `action` (delete, expire,
        evict) for each, without its text; the text of their earlier history is redacted. With
        `still` (a filter), only those still matching it go: see `MemoryStore.delete`."""
        if not ids:
            return 0
        async with self.locks.hold([(tenant, user)]):
            removed = await self.store.delete_rows(tenant, user, ids, still=still)
            self.commits += 1
            self.hot.removed(tenant, user, list(removed))
            if self.history is not None and removed:
                await self.history.redact(tenant, user, sorted(removed))
            # Two replicas removing the same memory at once record (and count) it once.
            return await self._record([Event(tenant, user, mid, action, None, None, cause, created=created) for mid, created in removed.items()])

    async def forget_user(self, tenant: str, user: str) -> tuple[int, int]:
        """Tombstone first (a write learned earlier is dropped from now on), then memories and their
        history; returns (memories, history rows) deleted."""
        async with self.locks.hold([(tenant, user)]):
            await self.tombstones.forget(tenant, user)
            removed = await self.store.forget_user(tenant, user)
            self.hot.forget(tenant, user)
            changes = await self.history.forget_user(tenant, user) if self.history is not None else 0
        return removed, changes

    # -- reads -------------------------------------------------------------------------------------

    async def latest(self) -> None:
        """Read the newest commits of every replica from now on, not LanceDB's copy of up to a second ago."""
        await self.store.latest()
        if self.history is not None:
            await self.history.table.checkout_latest()

    async def warm_users(self, keys: list[Key]) -> None:
        """Bring these users into the hot tier with one store read (before `nearest` asks for each)."""
        await self.hot.warm_many(keys)

    async def nearest(self, tenant: str, user: str, vector: np.ndarray, k: int = 5) -> list[tuple[Memory, float]]:
        """Cosine-nearest active memories (all agents, archival episodes aside), for reconciliation."""
        entry = await self.hot.get(tenant, user)
        if len(entry) == 0:
            return []
        scores = np.where(entry.archival, -np.inf, entry.matrix @ np.asarray(vector, dtype=np.float32))
        k = min(k, int((~entry.archival).sum()))
        best = np.argsort(-scores)[:k]
        return [(entry.memories[i], float(scores[i])) for i in best]

    async def search(
        self, tenant: str, user: str, text: str, top_k: int = 10, *, agent: str | None = None, tier: str | None = None,
    ) -> list[tuple[Memory, float]]:
        """An operator's search: flagged memories included; with `agent`, what that agent sees, else every
        agent's; with `tier`, that tier's memories only, else the core and recall tiers (as listing does)."""
        entry = await self.hot.get(tenant, user)
        if len(entry) == 0:
            return []
        query = Query.of(text, (await self.embedder.embed([text]))[0])
        found = rank(entry, query, agent=agent, top_k=len(entry) if tier in ("core", "recall") else top_k, include_flagged=True,
                     every_agent=agent is None, archival=tier == "archival")
        return [(m, score) for m, score in found if tier is None or m.tier == tier][:top_k]

    # -- usage and compaction, off the request path ---------------------------------------------------

    def used(self, tenant: str, user: str, memories: list[Memory]) -> None:
        now = time.time()
        for m in memories:
            key = (tenant, user, m.id)
            count, _ = self._usage.get(key, (0, now))
            self._usage[key] = (count + 1, now)

    def with_usage(self, memories: list[Memory]) -> list[Memory]:
        """Store-read memories with the recalls not yet folded into the store counted in, as the hot tier counts them."""
        for m in memories:
            pending = self._usage.get((m.tenant, m.user_id, m.id))
            if pending is not None:
                m.use_count += pending[0]
                m.last_used_at = max(m.last_used_at or 0.0, pending[1])
        return memories

    async def flush_usage(self) -> None:
        usage, self._usage = self._usage, {}
        if usage:
            await self.store.fold_usage(usage)
            self.commits += 1

    def start(self) -> None:
        self._task = asyncio.create_task(maintain(self))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.flush_usage()
        except Exception:
            log.warning("could not fold usage counts on shutdown", exc_info=True)
        await self.hot.aclose()
        await self.tombstones.aclose()
        if self.history is not None:
            self.history.close()
        await self.store.aclose()
        await self.embedder.aclose()
