"""Memory hygiene: retention (TTL), expiry of memories never recalled, and a per-user cap.

Rules match requests, but a user's memories serve every request of that user, so hygiene maps a
user to the first `[[rule]]` whose match names only `tenant` and/or `user` globs (model, path and
header left at their defaults) and matches the user; otherwise the `[defaults]`. A rule that also
matches on model, path or headers never decides retention.

Per user, in order (pinned memories are never removed by any of them):
- `ttl_days` > 0: memories created longer ago are expired (reason `ttl`).
- `expire_unused_days` > 0: memories not recalled within that many days (since their last use,
  or since creation when never used) are expired (reason `unused`).
- the cap (`max_memories`, or the gateway's `max_memories_per_user` when 0): above it, the least
  useful active memories are evicted (reason `cap`). Superseded rows do not count toward the cap.
  Archival episodes count toward their own cap (`max_episodes_per_user`), never toward this one, so
  a talkative user's turns never evict their facts.

Only the cap is on by default. Removals go through MemoryService (hot tier coherent) and are
recorded in the history with action `expire` or `evict` and cause `hygiene`. A pass plans from a
read of the user's rows, so each delete re-checks its reason (`still`): a memory pinned, recalled or
superseded in between is kept.

Then the pass erases: the history of every removed memory loses its text, the LanceDB fragments
holding removed rows are rewritten and old versions dropped, and the SQLite WAL is truncated, so the
text of what was forgotten, expired or evicted is gone from every file of the data dir.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Awaitable, Callable

from gateway.config import Settings
from gateway.memory.service import MemoryService
from gateway.metrics import HYGIENE_REASONS, Metrics
from gateway.rules import Match, RequestFacts, RuleSet, RuleSettings
from gateway.memory.records import Memory

log = logging.getLogger("memgate.hygiene")

DAY = 86400.0
EVICTION_RECENCY_DAYS = 30.0  # eviction: a memory last used (or made) this many days ago has lost 63% of its recency score
CAUSE = "hygiene"


def retention_for(rules: RuleSet, tenant: str, user: str) -> RuleSettings:
    """The settings that govern one user's retention (see the module docstring)."""
    default = Match()
    for rule in rules.rules:
        m = rule.match
        only_identity = m.model == default.model and m.path == default.path and not m.header
        if only_identity and m.matches(RequestFacts(tenant=tenant, user=user)):
            return rule.settings
    return rules.defaults


def usefulness(m: Memory, now: float) -> float:
    """Higher is more useful: recalled often, recently, and held with confidence."""
    last = m.last_used_at or m.created_at or now
    recency = math.exp(-max(0.0, now - last) / (EVICTION_RECENCY_DAYS * DAY))
    return math.log1p(m.use_count) + recency + m.confidence


def still(reason: str, rule: RuleSettings, now: float) -> str:
    """The store filter re-checking `reason` at delete time (a row changed since the plan is kept)."""
    kept = "pinned IS NOT TRUE"
    if reason == "ttl":
        return f"{kept} AND created_at < {now - rule.ttl_days * DAY!r}"
    if reason == "unused":
        return f"{kept} AND coalesce(last_used_at, created_at) < {now - rule.expire_unused_days * DAY!r}"
    return f"{kept} AND superseded_by IS NULL"  # the cap counts active memories only


def plan(rows: list[Memory], rule: RuleSettings, default_cap: int, now: float, episode_cap: int = 0) -> dict[str, list[Memory]]:
    """What to remove from one user's rows, by reason. Pure: the tests and the pass share it."""
    out: dict[str, list[Memory]] = {reason: [] for reason in HYGIENE_REASONS}
    keep: list[Memory] = []
    for m in rows:
        if m.pinned:
            keep.append(m)
        elif rule.ttl_days > 0 and (m.created_at or now) < now - rule.ttl_days * DAY:
            out["ttl"].append(m)
        elif rule.expire_unused_days > 0 and (m.last_used_at or m.created_at or now) < now - rule.expire_unused_days * DAY:
            out["unused"].append(m)
        else:
            keep.append(m)
    active = [m for m in keep if m.superseded_by is None]
    for cap, tier in ((rule.max_memories or default_cap, False), (episode_cap, True)):
        counted = [m for m in active if (m.tier == "archival") == tier]
        if cap > 0 and len(counted) > cap:
            candidates = sorted((m for m in counted if not m.pinned), key=lambda m: (usefulness(m, now), m.created_at, m.id))
            out["cap"] += candidates[: len(counted) - cap]
    return out


class Hygiene:
    def __init__(
        self, settings: Settings, metrics: Metrics, rules: Callable[[], RuleSet], memory: MemoryService,
        scrub_wal: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.settings = settings
        self.scrub_wal = scrub_wal  # the local SQLite file's WAL still holds deleted jobs' text
        self.metrics = metrics
        self.rules = rules
        self.memory = memory
        self._lock = asyncio.Lock()  # one pass at a time (the periodic task and the admin route)

    async def run(self) -> dict[str, Any]:
        """One pass over every user, then the erase; returns how many memories each reason removed
        and whether the erase finished."""
        service = self.memory
        async with self._lock:
            await service.flush_usage()  # recall counts still in memory decide what is "unused"
            removed = {reason: 0 for reason in HYGIENE_REASONS}
            seen: set[tuple[str, str]] = set()
            ruleset = self.rules()
            for tenant in await service.store.tenants():
                for user in await service.store.users(tenant):
                    seen.add((tenant, user))
                    rule = retention_for(ruleset, tenant, user)
                    now = time.time()
                    rows = await service.store.rows(tenant, user)
                    await self._redact_gone(service, tenant, user, {m.id for m in rows})
                    doomed = plan(rows, rule, self.settings.max_memories_per_user, now, self.settings.max_episodes_per_user)
                    for reason, memories in doomed.items():
                        if memories:
                            action = "evict" if reason == "cap" else "expire"
                            count = await service.remove(tenant, user, [m.id for m in memories], action, CAUSE, still=still(reason, rule, now))
                            self.metrics.hygiene_removed.labels(reason).inc(count)
                            removed[reason] += count
            if any(removed.values()):
                log.info("hygiene pass removed memories", extra={"removed": removed, "users": len(seen)})
            erased = await self.erase(service, seen)
            return {"users": len(seen), "removed": removed, "erased": erased}

    async def _redact_gone(self, service: MemoryService, tenant: str, user: str, stored: set[str]) -> None:
        """Redact the history of this user's memories no longer stored: removals this process did not
        make (another replica's) or whose redaction was interrupted (a crash)."""
        if service.history is None:
            return
        gone = await service.history.texted(tenant, user) - stored
        if gone:
            # Re-read after the history: a memory is stored before its first change is recorded.
            gone -= await service.store.ids(tenant, user)
            await service.history.redact(tenant, user, sorted(gone))

    async def erase(self, service: MemoryService, seen: set[tuple[str, str]]) -> bool:
        """Removed text off the disk: history of users no longer stored at all (`seen` are those the
        pass went through), LanceDB files, the SQLite WAL. A failure is logged and retried by the
        next pass (the pass itself still answers)."""
        try:
            if service.history is not None:
                for tenant, user in await service.history.texted_users() - seen:
                    await self._redact_gone(service, tenant, user, set())
            await service.store.erase()
            if service.history is not None:
                await service.history.scrub()
            return self.scrub_wal is None or await self.scrub_wal()
        except Exception:
            log.warning("erasing removed memories failed; the next hygiene pass retries", exc_info=True)
            return False

    async def periodic(self) -> None:
        """Every `hygiene_interval` seconds: a pass, then compaction (removals leave deletion files, and
        a compacted table is the easiest to back up)."""
        interval = self.settings.hygiene_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run()
                await self.memory.store.optimize()  # docs/operations.md (backups) counts on this compaction
            except Exception:
                log.warning("hygiene pass failed; will retry next interval", exc_info=True)
