"""The start-up prefetch: load the most recently active users into the hot tier before the gateway says
it is ready, so a restart or a deploy does not make every returning user's first request a cold read."""

from __future__ import annotations

import asyncio
import logging
import time

import pyarrow as pa
import pyarrow.compute as pc

from gateway.memory.service import MemoryService
from gateway.metrics import Metrics

log = logging.getLogger("memgate.prefetch")


def most_recent(rows: pa.Table, limit: int) -> list[tuple[str, str]]:
    """The `limit` (tenant, user) scopes of `rows` whose latest write or use is newest, newest first (CPU work: for a thread)."""
    if rows.num_rows == 0 or limit <= 0:
        return []
    active = pc.max_element_wise(pc.fill_null(rows.column("updated_at"), 0.0), pc.fill_null(rows.column("last_used_at"), 0.0))
    table = pa.table({"tenant": rows.column("tenant"), "user_id": rows.column("user_id"), "active": active})
    latest = table.group_by(["tenant", "user_id"]).aggregate([("active", "max")])
    latest = latest.sort_by([("active_max", "descending"), ("tenant", "ascending"), ("user_id", "ascending")]).slice(0, limit)
    return list(zip(latest.column("tenant").to_pylist(), latest.column("user_id").to_pylist()))


async def prefetch(service: MemoryService, metrics: Metrics, users: int, seconds: float) -> int:
    """Warm up to `users` users (never more than the hot tier holds) within `seconds`; returns how many were loaded.
    A failure or the deadline only ends the prefetch early: those users load on their first request as usual."""
    started = time.monotonic()
    limit = min(users, service.hot.capacity)
    loaded: list[tuple[str, str]] = []
    if limit > 0 and seconds > 0:
        try:
            async with asyncio.timeout(seconds):
                recent = await asyncio.to_thread(most_recent, await service.store.activity(), limit)
                for tenant, user in recent:
                    await service.hot.warm(tenant, user)
                    loaded.append((tenant, user))
        except TimeoutError:
            log.info("prefetch stopped at its deadline", extra={"users": len(loaded), "seconds": seconds})
        except Exception:
            log.warning("prefetch failed; users load on their first request", exc_info=True)
    for key in reversed(loaded):  # loaded newest first; the LRU should evict the least recent of them first
        if key in service.hot.entries:
            service.hot.entries.move_to_end(key)
    elapsed = time.monotonic() - started
    metrics.prefetch_users.set(len(loaded))
    metrics.prefetch_seconds.set(elapsed)
    log.info("prefetched users into the hot tier", extra={"users": len(loaded), "seconds": round(elapsed, 3)})
    return len(loaded)
