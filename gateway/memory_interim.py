"""Stand-in for gateway/memory.py's MemoryService until the recall stream lands it (same interface,
no hot tier: `nearest` scans the user's active memories). Delete once memory.py is merged."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .store import Memory, MemoryStore


class InterimMemoryService:
    def __init__(self, store: MemoryStore, embedder: Any) -> None:
        self.store = store
        self.embedder = embedder
        self.history: Any = None

    async def write(self, memories: list[Memory]) -> list[Memory]:
        missing = [m for m in memories if m.vector is None]
        if missing:
            for m, v in zip(missing, await self.embedder.embed([m.text for m in missing])):
                m.vector = v
        for m in memories:
            m.tokens = m.tokens or len(m.text.split())
        added = await self.store.add(memories)
        if self.history is not None:
            await self.history.record_many([(m.tenant, m.user_id, m.id, "add", None, m.text, m.source_request_id or "admin") for m in added])
        return added

    async def update(self, tenant: str, user: str, id: str, *, text: str | None = None, kind: str | None = None, pinned: bool | None = None,
                     confidence: float | None = None, cause: str) -> Memory | None:
        old = await self.store.get(tenant, user, id)
        if old is None:
            return None
        changes: dict[str, Any] = {"updated_at": time.time()}
        if text is not None:
            changes["text"] = text
            changes["vector"] = (await self.embedder.embed([text]))[0]
        for name, value in (("kind", kind), ("pinned", pinned), ("confidence", confidence)):
            if value is not None:
                changes[name] = value
        new = await self.store.update(tenant, user, id, **changes)
        if self.history is not None:
            action = "update" if text is not None or kind is not None or pinned is not None else "refresh"
            await self.history.record(tenant, user, id, action, old.text, new.text if new else None, cause)
        return new

    async def supersede(self, tenant: str, user: str, old_id: str, new_id: str, cause: str) -> None:
        old = await self.store.get(tenant, user, old_id)
        new = await self.store.get(tenant, user, new_id)
        await self.store.supersede(tenant, user, old_id, new_id)
        if self.history is not None and old is not None:
            await self.history.record(tenant, user, old_id, "supersede", old.text, new.text if new else None, cause)

    async def delete(self, tenant: str, user: str, id: str, cause: str) -> bool:
        old = await self.store.get(tenant, user, id)
        n = await self.store.delete(tenant, user, [id])
        if self.history is not None and old is not None:
            await self.history.record(tenant, user, id, "delete", old.text, None, cause)
        return n > 0

    async def nearest(self, tenant: str, user: str, vector: np.ndarray, k: int = 5) -> list[tuple[Memory, float]]:
        active = await self.store.active(tenant, user)
        scored = [(m, float(np.dot(m.vector, vector))) for m in active if m.vector is not None]
        scored.sort(key=lambda x: -x[1])
        return scored[:k]
