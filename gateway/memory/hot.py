"""The hot tier: a bounded LRU of active users' memories (vectors, texts, BM25), coherent with every write."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Iterable

import numpy as np

from gateway.memory.confirmations import held_for
from gateway.memory.keywords import KeywordIndex
from gateway.metrics import Metrics
from gateway.memory.records import CORE_KINDS, Memory
from gateway.memory.scopes import REVALIDATE_SECONDS
from gateway.memory.store import MemoryStore
from gateway.memory.tombstones import Tombstones

log = logging.getLogger("memgate.hot")
Key = tuple[str, str]


class UserMemories:
    """One user's active (not superseded) memories, ready for sub-millisecond recall.

    Per-memory metadata lives in numpy arrays too, so ranking never loops over memories in Python.
    """

    def __init__(self, memories: list[Memory], dim: int, version: int) -> None:
        self.dim = dim
        self.version = version
        self.checked = time.monotonic()
        self.memories: list[Memory] = []
        self.matrix = np.zeros((0, dim), dtype=np.float32)
        self.keywords = KeywordIndex()
        self.agents: dict[str, int] = {}  # agent id -> code; 0 means user-wide
        self.pending: list[Memory] = []  # held back until the user confirms them (gateway/memory/confirmations.py)
        self.add(memories)

    def __len__(self) -> int:
        return len(self.memories)

    def _index_metadata(self) -> None:
        ms = self.memories
        self.position = {m.id: i for i, m in enumerate(ms)}
        self.flagged = np.fromiter((m.flagged for m in ms), bool, len(ms))
        self.pinned = np.fromiter((m.pinned for m in ms), bool, len(ms))
        self.core_kind = np.fromiter((m.kind in CORE_KINDS for m in ms), bool, len(ms))
        self.archival = np.fromiter((m.tier == "archival" for m in ms), bool, len(ms))
        self.agent_code = np.fromiter((self.agents.setdefault(m.agent_id, len(self.agents) + 1) if m.agent_id else 0 for m in ms), np.int32, len(ms))
        self.written_at = np.fromiter((m.updated_at or m.created_at for m in ms), np.float64, len(ms))
        self.used_at = np.fromiter((m.last_used_at or 0.0 for m in ms), np.float64, len(ms))
        self.use_count = np.fromiter((m.use_count for m in ms), np.float64, len(ms))
        # A confidence outside 0..1 (None, NaN: stored before writes checked it) counts as sure.
        self.confidence = np.fromiter((m.confidence if m.confidence is not None and 0.0 <= m.confidence <= 1.0 else 1.0 for m in ms), np.float64, len(ms))

    def add(self, memories: Iterable[Memory]) -> None:
        have = {m.id for m in self.memories} | {m.id for m in self.pending}
        memories = [m for m in memories if m.id not in have]
        self.pending += [m for m in memories if held_for(m) is not None]
        fresh = [m for m in memories if m.superseded_by is None and m.vector is not None]
        if fresh:
            self.memories.extend(fresh)
            self.matrix = np.vstack([self.matrix, np.stack([np.asarray(m.vector, dtype=np.float32) for m in fresh])])
            self.keywords.add([m.text for m in fresh])
        self._index_metadata()

    def remove(self, ids: Iterable[str]) -> None:
        gone = set(ids)
        self.pending = [m for m in self.pending if m.id not in gone]
        mask = np.array([m.id not in gone for m in self.memories], dtype=bool)
        if mask.all():
            return
        self.memories = [m for m, ok in zip(self.memories, mask) if ok]
        self.matrix = self.matrix[mask]
        self.keywords.keep(mask)
        self._index_metadata()

    def replace(self, memory: Memory) -> None:
        i = self.position.get(memory.id)
        if i is not None and self.memories[i].text == memory.text and memory.superseded_by is None and memory.vector is not None:
            self.memories[i] = memory  # metadata only: vectors and postings stay valid
            self._index_metadata()
            return
        self.remove([memory.id])
        self.add([memory])

    def used(self, ids: Iterable[str], when: float) -> None:
        """Count a recall of these memories (the store learns of it later, in a batch)."""
        for mid in ids:
            i = self.position.get(mid)
            if i is not None:
                m = self.memories[i]
                m.use_count += 1
                m.last_used_at = when
                self.use_count[i] = m.use_count
                self.used_at[i] = when

    def confirmations(self, agent: str | None) -> list[tuple[Memory, Memory]]:
        """(stored, newly said) for each active memory visible to `agent` that a pending memory contradicts: the newest
        pending one when the user said several new values."""
        pairs: dict[str, tuple[Memory, Memory]] = {}
        for said in sorted(self.pending, key=lambda m: m.created_at, reverse=True):
            i = self.position.get(held_for(said) or "")
            if i is not None and self.memories[i].agent_id in (None, agent):
                pairs.setdefault(self.memories[i].id, (self.memories[i], said))
        return list(pairs.values())

    def visible(self, agent: str | None, include_flagged: bool, every_agent: bool = False) -> np.ndarray:
        """Mask of memories a request may see: user-wide plus its agent's (or every agent's, for an
        operator), flagged ones only if allowed."""
        mask = np.ones(len(self.memories), bool) if every_agent else self.agent_code == 0
        if agent is not None and agent in self.agents:
            mask = mask | (self.agent_code == self.agents[agent])
        return mask if include_flagged else mask & ~self.flagged


class HotTier:
    """Bounded LRU keyed by (tenant, user). Misses load from the store; stale entries reload in the background."""

    def __init__(self, store: MemoryStore, capacity: int, metrics: Metrics, tombstones: Tombstones | None = None) -> None:
        self.store = store
        self.tombstones = tombstones
        self._read_latest = False  # a user was forgotten elsewhere: the next load reads the newest table version
        if tombstones is not None:
            tombstones.on_forgotten.append(self._forgotten_elsewhere)
        self.capacity = max(1, capacity)
        self.metrics = metrics
        self.entries: OrderedDict[Key, UserMemories] = OrderedDict()
        self._generation: dict[Key, int] = {}  # keys being loaded -> writes seen meanwhile (the load retries)
        self._batch_generation: dict[Key, int] = {}  # the same for `warm_many` (which then leaves the key alone)
        self._loading: dict[Key, asyncio.Task[UserMemories]] = {}
        self._reloads: set[asyncio.Task[None]] = set()

    async def get(self, tenant: str, user: str) -> UserMemories:
        if self.tombstones is not None:
            await self.tombstones.current()  # a user forgotten on another replica is dropped here within its bound
        key = (tenant, user)
        entry = self.entries.get(key)
        if entry is None:
            if key not in self._loading and not await self.store.scopes.may_have(tenant, user):
                self.metrics.hot_tier.labels("empty").inc()
                return UserMemories([], self.store.dim, version=0)  # not cached: the first write makes it a real miss
            self.metrics.hot_tier.labels("miss").inc()
            return await self._load_once(key)
        self.entries.move_to_end(key)
        self.metrics.hot_tier.labels("hit").inc()
        now = time.monotonic()
        if now - entry.checked >= REVALIDATE_SECONDS:
            entry.checked = now
            latest = await self.store.version()
            if not self.store.foreign_commits(entry.version, latest):
                entry.version = latest  # only our own commits, already applied here
            elif key not in self._loading:
                self.metrics.hot_tier.labels("reload").inc()
                task = asyncio.create_task(self._reload(key))
                self._reloads.add(task)
                task.add_done_callback(self._reloads.discard)
        return entry

    async def warm(self, tenant: str, user: str) -> None:
        """Load a user ahead of their first request (the start-up prefetch); not counted as a lookup."""
        if (tenant, user) not in self.entries:
            await self._load_once((tenant, user))

    async def warm_many(self, keys: Iterable[Key]) -> None:
        """Load the users not cached nor loading in one store read (an extraction batch's users); one written to
        meanwhile is left for its own load."""
        cold = [k for k in dict.fromkeys(keys) if k not in self.entries and k not in self._loading]
        if len(cold) < 2 or self._read_latest:
            return
        for key in cold:
            self._batch_generation[key] = 0
        try:
            version = await self.store.version()
            found = await self.store.active_of(cold)
            entries = await asyncio.to_thread(lambda: {k: UserMemories(found[k], self.store.dim, version) for k in cold})
            for key, entry in entries.items():
                if self._batch_generation.get(key) == 0 and key not in self.entries and key not in self._loading:
                    self.entries[key] = entry
            while len(self.entries) > self.capacity:
                self.entries.popitem(last=False)
        finally:
            for key in cold:
                self._batch_generation.pop(key, None)

    async def _load_once(self, key: Key) -> UserMemories:
        # One load per user at a time, in its own task: a caller that times out does not cancel it,
        # so the user is warm for the next request.
        task = self._loading.get(key)
        if task is None:
            self._generation[key] = 0
            task = asyncio.create_task(self._load(key))
            self._loading[key] = task

            def done(t: asyncio.Task[UserMemories]) -> None:
                self._loading.pop(key, None)
                self._generation.pop(key, None)
                if not t.cancelled():
                    t.exception()  # mark retrieved: waiters re-raise it themselves

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _load(self, key: Key) -> UserMemories:
        for _ in range(3):
            generation = self._generation.get(key, 0)
            if self._read_latest:
                self._read_latest = False
                await self.store.latest()  # LanceDB's own copy may predate the forget
            version = await self.store.version()
            # Indexing a full user (5,000 memories: vectors, BM25 postings) takes ~0.2 s of CPU: not on the loop.
            entry = await asyncio.to_thread(UserMemories, await self.store.active(*key), self.store.dim, version)
            if self._generation.get(key, 0) == generation:
                break  # no write overlapped the load
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return entry

    async def _reload(self, key: Key) -> None:
        try:
            await self._load_once(key)
        except Exception:
            log.warning("hot tier reload failed; serving the cached copy", exc_info=True)

    # -- writes: MemoryService calls these after the store commit ---------------------------------

    def _touch(self, key: Key) -> UserMemories | None:
        if key in self._generation:
            self._generation[key] += 1
        if key in self._batch_generation:
            self._batch_generation[key] += 1
        return self.entries.get(key)

    def added(self, memories: list[Memory]) -> None:
        by_key: dict[Key, list[Memory]] = {}
        for m in memories:
            by_key.setdefault((m.tenant, m.user_id), []).append(m)
        for key, group in by_key.items():
            entry = self._touch(key)
            if entry is not None:
                entry.add(group)

    def updated(self, memory: Memory) -> None:
        entry = self._touch((memory.tenant, memory.user_id))
        if entry is not None:
            entry.replace(memory)

    def removed(self, tenant: str, user: str, ids: list[str]) -> None:
        entry = self._touch((tenant, user))
        if entry is not None:
            entry.remove(ids)

    def _forgotten_elsewhere(self, key: Key) -> None:
        self._read_latest = True
        self.forget(*key)

    def forget(self, tenant: str, user: str) -> None:
        self._touch((tenant, user))
        self.entries.pop((tenant, user), None)

    async def aclose(self) -> None:
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)
