"""The memory layer the proxy calls: recall and inject before forwarding, capture after."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Awaitable, Callable

from gateway.exchange import ChatContext, Reply
from gateway.memory import tokens
from gateway.memory.inject import appends_to_text, pack, with_block
from gateway.memory.recall import EPISODE_MIN_SCORE, Query, core_profile, query_text, rank, relevance_of
from gateway.memory.records import Memory
from gateway.memory.service import MemoryService
from gateway.metrics import Metrics

log = logging.getLogger("memgate.memory")

# Past this many prompt bytes an exact token count may take a millisecond: do it in a thread.
INLINE_COUNT_BYTES = 4_096


class MemoryLayer:
    """What the proxy calls: recall and inject before forwarding; capture (the extraction hook) after."""

    def __init__(self, service: MemoryService, metrics: Metrics, enqueue: Callable[[ChatContext, dict[str, Any], Reply], Awaitable[Any]] | None = None) -> None:
        self.service = service
        self.metrics = metrics
        self.enqueue = enqueue

    async def recall_into(self, ctx: ChatContext, payload: dict[str, Any]) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(ctx.rule.recall_timeout_ms / 1000):
                injected = await self._recall(ctx, payload)
        except TimeoutError:
            ctx.memory_status = "timeout"
            self.metrics.recall_timeouts.inc()
            return None
        except Exception:
            log.warning("recall failed; forwarding without memories", extra={"request_id": ctx.request_id}, exc_info=True)
            ctx.memory_status = "degraded"
            return None
        finally:
            self.metrics.recall_duration.observe(time.perf_counter() - started)
        self.metrics.memories_injected.observe(ctx.injected)
        self.metrics.injected_tokens.observe(ctx.injected_tokens)
        return injected

    async def _recall(self, ctx: ChatContext, payload: dict[str, Any]) -> dict[str, Any] | None:
        identity, rule, service = ctx.identity, ctx.rule, self.service
        if not isinstance(payload.get("messages"), list) or identity.user is None:
            return None
        entry = await service.hot.get(identity.tenant, identity.user)
        if len(entry) == 0:
            return None
        budget = await self._budget(ctx, payload)
        if budget <= 0:
            return None
        text = query_text(payload)
        ranked: list[tuple[Memory, float]] = []
        said: list[tuple[Memory, float]] = []
        if text:
            query = Query.of(text, (await service.embedder.embed([text]))[0])
            scores = relevance_of(entry, query)  # once for both tiers
            ranked = rank(entry, query, agent=identity.agent, top_k=rule.top_k, min_score=rule.min_score, include_flagged=rule.include_flagged,
                          archival=False, scores=scores)
            if rule.episodes_top_k and entry.archival.any():
                said = rank(entry, query, agent=identity.agent, top_k=rule.episodes_top_k, min_score=max(rule.min_score, EPISODE_MIN_SCORE),
                            include_flagged=rule.include_flagged, archival=True, scores=scores)
        core = core_profile(entry, ranked, agent=identity.agent, include_flagged=rule.include_flagged)
        # The user's own words come after the core profile and the facts: they fill what budget is left.
        relevant = [m for m, _ in ranked] + [m for m, _ in said]
        packed = pack(core, relevant, budget, rule.core_budget_tokens, rule.template, ctx.model, appends_to_text(payload))
        if not packed.memories:
            return None
        ctx.injected, ctx.injected_tokens = len(packed.memories), packed.tokens
        entry.used([m.id for m in packed.memories], time.time())
        service.used(identity.tenant, identity.user, packed.memories)
        return with_block(payload, packed)

    @staticmethod
    async def _budget(ctx: ChatContext, payload: dict[str, Any]) -> int:
        """The memory budget for this prompt; a long prompt is counted in a thread that stops at its next
        slice once the recall gives up (its timeout cancels us), so no count outlives its request."""
        rule = ctx.rule
        if tokens.prompt_tokens(payload, ctx.model, exact=False) <= INLINE_COUNT_BYTES:
            return tokens.memory_budget(payload, ctx.model, rule.budget_tokens, rule.budget_ratio)
        stopped = threading.Event()
        try:
            return await asyncio.to_thread(tokens.memory_budget, payload, ctx.model, rule.budget_tokens, rule.budget_ratio, stopped.is_set)
        finally:
            stopped.set()

    async def capture(self, ctx: ChatContext, payload: dict[str, Any], reply: Reply) -> None:
        if self.enqueue is None:
            return
        try:
            await self.enqueue(ctx, payload, reply)
        except Exception:
            log.warning("could not enqueue the exchange for extraction", extra={"request_id": ctx.request_id}, exc_info=True)
            ctx.memory_status = "degraded"
