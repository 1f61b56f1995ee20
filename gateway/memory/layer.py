"""The memory layer the proxy calls: recall and inject before forwarding, capture after."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
import time
from typing import Any, Awaitable, Callable

from gateway.exchange import ChatContext, Reply
from gateway.memory.counts import NeedsThread
from gateway.memory.fitting import Plan, plan
from gateway.memory.overflow import Trimming
from gateway.memory.inject import pack
from gateway.memory.recall import EPISODE_MIN_SCORE, Query, core_profile, query_text, rank, relevance_of
from gateway.memory.records import SUMMARY_KIND, Memory
from gateway.memory.service import MemoryService
from gateway.memory.sessions import due, previous_summary, session_of, summarize, summary_id, user_texts
from gateway.memory.windows import Windows
from gateway.metrics import Metrics

log = logging.getLogger("memgate.memory")

# Past this much new (uncached) prompt text, counting it may take a millisecond: do it in a thread.
INLINE_COUNT_CHARS = 4_096
# Sizing walks every message even when their counts are cached (~2 us each): past this many, in a thread too.
INLINE_MESSAGES = 1_024


class MemoryLayer:
    """What the proxy calls: fit the request to its context window and inject memories before forwarding;
    capture (the extraction hook) after."""

    def __init__(
        self, service: MemoryService, metrics: Metrics, enqueue: Callable[[ChatContext, dict[str, Any], Reply], Awaitable[Any]] | None = None,
        summarize: Callable[[ChatContext, list[str]], Awaitable[str | None]] | None = None,
    ) -> None:
        """`summarize` writes a session's summary from its user turns (the llm's, when the request's extractor is
        llm), or gives None: then the extractive summary stands in."""
        self.service = service
        self.metrics = metrics
        self.enqueue = enqueue
        self.summarize = summarize
        self.windows = Windows(metrics.unknown_model.inc)
        self._summaries: set[asyncio.Task[None]] = set()  # session summaries being written (referenced until done)
        self._tickets = itertools.count()
        self._newest: dict[str, int] = {}  # summary id -> ticket of its newest rewrite still running

    async def recall_block(
        self, ctx: ChatContext, view: dict[str, Any], appends: Callable[[dict[str, Any] | None], bool], *, trimming: Trimming | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        if not isinstance(view.get("messages"), list):
            return None, None
        try:
            fitted = await self._plan(ctx, view, trimming)
        except Exception:
            log.warning("could not size the request against its context window; forwarding it as is", extra={"request_id": ctx.request_id}, exc_info=True)
            if ctx.read:
                ctx.memory_status = "degraded"
            return None, None
        if not ctx.read:
            return fitted.payload, None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(ctx.rule.recall_timeout_ms / 1000):
                session = session_of(ctx.identity.session, view["messages"])  # of the whole conversation, not the trimmed one
                block = await self._recall(ctx, fitted.view or view, appends(fitted.payload), fitted.memory_budget, session)
        except TimeoutError:
            ctx.memory_status = "timeout"
            self.metrics.recall_timeouts.labels(ctx.api).inc()
            return fitted.payload, None
        except Exception:
            log.warning("recall failed; forwarding without memories", extra={"request_id": ctx.request_id}, exc_info=True)
            ctx.memory_status = "degraded"
            return fitted.payload, None
        finally:
            self.metrics.recall_duration.labels(ctx.api).observe(time.perf_counter() - started)
        self.metrics.memories_injected.labels(ctx.api).observe(ctx.injected)
        self.metrics.injected_tokens.labels(ctx.api).observe(ctx.injected_tokens)
        return fitted.payload, block

    async def _recall(self, ctx: ChatContext, payload: dict[str, Any], appending: bool, budget: int, session: str) -> str | None:
        identity, rule, service = ctx.identity, ctx.rule, self.service
        if identity.user is None or budget <= 0:
            return None
        entry = await service.hot.get(identity.tenant, identity.user)
        if len(entry) == 0:
            return None
        text = query_text(payload)
        ranked: list[tuple[Memory, float]] = []
        said: list[tuple[Memory, float]] = []
        if text:
            query = Query.of(text, (await service.embedder.embed([text]))[0])
            scores = relevance_of(entry, query)  # once for both tiers
            ranked = rank(entry, query, agent=identity.agent, top_k=rule.top_k, min_score=rule.min_score, include_flagged=rule.include_flagged,
                          archival=False, scores=scores)
            ranked = [(m, score) for m, score in ranked if m.kind != SUMMARY_KIND]  # only the previous session's, below
            if rule.episodes_top_k and entry.archival.any():
                said = rank(entry, query, agent=identity.agent, top_k=rule.episodes_top_k, min_score=max(rule.min_score, EPISODE_MIN_SCORE),
                            include_flagged=rule.include_flagged, archival=True, scores=scores)
        core = core_profile(entry, ranked, agent=identity.agent, include_flagged=rule.include_flagged)
        last = previous_summary(entry.memories, identity.agent, session)
        if last is not None:  # "last time: ..." opens the core profile
            core = [last, *(m for m in core if m.id != last.id)]
        # The user's own words come after the core profile and the facts: they fill what budget is left.
        relevant = [m for m, _ in ranked] + [m for m, _ in said]
        packed = pack(core, relevant, budget, rule.core_budget_tokens, rule.template, ctx.model, appending,
                      entry.confirmations(identity.agent))
        if not packed.memories and not packed.confirmations:
            return None
        ctx.injected, ctx.injected_tokens = len(packed.memories) + len(packed.confirmations), packed.tokens
        for _, said in packed.confirmations:
            service.asked.note(said.id, ctx.request_id)
        entry.used([m.id for m in packed.memories], time.time())
        service.used(identity.tenant, identity.user, packed.memories)
        return packed.text

    async def _plan(self, ctx: ChatContext, payload: dict[str, Any], trimming: Trimming | None) -> Plan:
        """Size the request (trimming it with `trimming` if it overflows) on the event loop while that needs only cached
        counts and a little new text; else in a thread, which stops at its next slice if this request is cancelled."""
        window = self.windows.resolve(ctx.model, ctx.rule.context_window)
        rule = ctx.rule if trimming is not None else dataclasses.replace(ctx.rule, overflow="off")
        try:
            if len(payload["messages"]) > INLINE_MESSAGES:
                raise NeedsThread
            fitted = plan(payload, ctx.model, rule, window, ctx.read, inline_chars=INLINE_COUNT_CHARS, trimming=trimming)
        except NeedsThread:
            stopped = threading.Event()
            try:
                fitted = await asyncio.to_thread(plan, payload, ctx.model, rule, window, ctx.read, stopped.is_set, trimming=trimming)
            finally:
                stopped.set()
        if fitted.outcome != "fits":
            self.metrics.overflow.labels(fitted.outcome).inc()
        if fitted.outcome == "trimmed":
            ctx.trimmed_messages, ctx.trimmed_tokens = fitted.dropped_messages, fitted.dropped_tokens
            self.metrics.overflow_dropped_messages.inc(fitted.dropped_messages)
            log.info("trimmed the conversation to fit the context window", extra={
                "request_id": ctx.request_id, "context_window": window.tokens, "dropped_messages": fitted.dropped_messages,
                "dropped_tokens": fitted.dropped_tokens, "prompt_tokens": fitted.prompt_tokens})
        elif fitted.outcome == "unfittable":
            log.warning("the system messages and latest turn alone overflow the context window; forwarding as is",
                        extra={"request_id": ctx.request_id, "context_window": window.tokens, "prompt_tokens": fitted.prompt_tokens})
        return fitted

    async def capture(self, ctx: ChatContext, payload: dict[str, Any], reply: Reply) -> None:
        messages = payload.get("messages")
        if ctx.identity.user is not None and isinstance(messages, list) and due(messages, ctx.rule.summary_every_turns):
            session = session_of(ctx.identity.session, messages)
            mid = summary_id(ctx.identity.tenant, ctx.identity.user, ctx.identity.agent, session)
            self._newest[mid] = ticket = next(self._tickets)
            task = asyncio.create_task(self._rewrite_summary(ctx, session, mid, ticket, user_texts(messages), time.time()))
            self._summaries.add(task)
            task.add_done_callback(self._summaries.discard)
        if self.enqueue is None:
            return
        try:
            await self.enqueue(ctx, payload, reply)
        except Exception:
            log.warning("could not enqueue the exchange for extraction", extra={"request_id": ctx.request_id}, exc_info=True)
            ctx.memory_status = "degraded"

    async def _rewrite_summary(self, ctx: ChatContext, session: str, mid: str, ticket: int, texts: list[str], learned: float) -> None:
        """Write or rewrite the session's summary memory `mid`, off the request path; dropped if the user is forgotten
        meanwhile, or if a newer rewrite of it started meanwhile (a slow llm answer must not undo a newer summary)."""
        identity, service = ctx.identity, self.service
        assert identity.user is not None
        try:
            text = await self._summary_text(ctx, texts)
            if not text or self._newest.get(mid) != ticket:
                return
            current = await service.store.get(identity.tenant, identity.user, mid)
            if current is None:
                summary = Memory(id=mid, tenant=identity.tenant, user_id=identity.user, text=text, kind=SUMMARY_KIND, agent_id=identity.agent,
                                 session_id=session, source_request_id=ctx.request_id)
                await service.write([summary], "summary", learned={(identity.tenant, identity.user): learned})
            elif current.text != text:
                await service.update(identity.tenant, identity.user, mid, text=text, cause="summary", learned=learned)
        except Exception:
            log.warning("could not write the session summary", extra={"request_id": ctx.request_id}, exc_info=True)
        finally:
            if self._newest.get(mid) == ticket:
                del self._newest[mid]

    async def _summary_text(self, ctx: ChatContext, texts: list[str]) -> str:
        """The summarizer's summary, else (none, or it failed) the extractive one."""
        if self.summarize is not None:
            try:
                written = await self.summarize(ctx, texts)
                if written:
                    return written
            except Exception:
                log.warning("the session summarizer failed; using the extractive summary", extra={"request_id": ctx.request_id}, exc_info=True)
        return await asyncio.to_thread(summarize, texts)
