"""What an extraction worker does with a batch of one user's jobs: extract, then reconcile."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

from gateway.config import Settings
from gateway.extraction.base import Extractor, Message
from gateway.extraction.critical import answer
from gateway.extraction.heuristic import HeuristicExtractor
from gateway.extraction.llm import LLMExtractor
from gateway.extraction.llm_status import LLMStatus
from gateway.extraction.jobs import Job
from gateway.extraction.reconcile import Group, Reconciler, Sourced
from gateway.extraction.settle import settle
from gateway.extraction.verify import verified
from gateway.memory.archival import episodes, source_of
from gateway.memory.records import Memory
from gateway.metrics import Metrics
from gateway.rules import RuleSet, RuleSettings
from gateway.upstream import Upstream

log = logging.getLogger("memgate.learn")

MAX_PROMPT_CHARS = 24_000  # per extraction call; a coalesced batch of long turns is split


def chunks(messages: Sequence[Message], limit: int) -> list[list[Message]]:
    """Consecutive runs of messages of at most `limit` characters (a longer message goes alone)."""
    out: list[list[Message]] = [[]]
    size = 0
    for m in messages:
        if out[-1] and size + len(m.text) > limit:
            out.append([])
            size = 0
        out[-1].append(m)
        size += len(m.text)
    return [part for part in out if part]


class Learner:
    """The queue's `process` callable. Raises on failure so the queue retries the batch."""

    def __init__(self, settings: Settings, upstream: Upstream, reconciler: Reconciler, metrics: Metrics, rules: Callable[[], RuleSet] | None = None) -> None:
        self.settings = settings
        self.upstream = upstream
        self.reconciler = reconciler
        self.rules = rules
        self.heuristic = HeuristicExtractor()
        self.llm_status = LLMStatus(metrics, settings.upstream_base, settings.llm_output_mode)

    def rule(self, name: str) -> RuleSettings:
        """The current settings of the rule a job was captured under (its defaults when renamed or gone since)."""
        rules = self.rules() if self.rules is not None else None
        if rules is None:
            return RuleSettings()
        return next((r.settings for r in rules.rules if r.name == name), rules.defaults)

    def extractor_for(self, name: str, caller_key: str, jobs: int) -> Extractor:
        """The extractor for a batch of `jobs` jobs; `llm` without any key (a job recovered after a
        restart, whose caller's key was never written down) falls back to `heuristic`."""
        if name == "llm":
            key = self.settings.extraction_api_key or caller_key
            if key:
                return LLMExtractor(self.upstream, self.settings.extraction_model, key, max_calls=self.settings.max_llm_calls_per_job * jobs,
                                    status=self.llm_status)
            log.info("llm extraction job has no key (recovered after a restart): using the heuristic extractor")
        return self.heuristic

    async def __call__(self, batches: Sequence[Sequence[Job]]) -> None:
        """Each batch is one user's jobs, in order. Extraction runs concurrently across users (llm
        calls overlap); reconciliation commits every user's new memories in one store write."""
        batches = await self.reconciler.unforgotten(batches)  # done without a word extracted
        for jobs in batches:
            await settle(self.reconciler.memory, jobs)  # a yes or no to a confirmation, before anything new is learned
        said = {jobs[0].id: self._episodes(jobs) for jobs in batches}
        groups = await asyncio.gather(*(self._extract(jobs, said[jobs[0].id]) for jobs in batches))
        # The user's own words first, in one commit: the facts learned from them link to them.
        causes = {e.id: f"job:{job.id}" for jobs in batches for job in jobs for e in said[jobs[0].id][job.id]}
        if causes:
            kept = list({e.id: e for jobs in batches for job in jobs for e in said[jobs[0].id][job.id]}.values())
            await self.reconciler.memory.write(kept, cause=causes, learned={(g.tenant, g.user): g.learned for g in groups})
        await self.reconciler.apply(groups)

    @staticmethod
    def _episodes(jobs: Sequence[Job]) -> dict[int, list[Memory]]:
        """Each job's user turns as archival episodes (see gateway/memory/archival.py); a yes or no that may answer a
        confirmation is no episode: it means something only next to the question."""
        return {job.id: episodes(job.tenant, job.user, job.agent, job.session,
                                 [m.text for m in job.messages if m.role == "user" and m.source and answer(m.text) is None],
                                 job.request_id, job.created_at) for job in jobs}

    async def _extract(self, jobs: Sequence[Job], said: dict[int, list[Memory]]) -> Group:
        first = jobs[0]
        extractor = self.extractor_for(first.extractor, first.api_key, len(jobs))
        items: list[Sourced] = []
        if extractor is self.heuristic:
            # Offline and cheap: per job, so each memory is attributed to the request that taught it.
            for job in jobs:
                found = await extractor.extract(job.messages, job.reply)
                items += [Sourced(c, job.id, i, job.request_id, job.session, source_of(c.text, said[job.id])) for i, c in enumerate(found)]
        elif isinstance(extractor, LLMExtractor):
            # One upstream call for the batch (more if it is long): attributed to its first job (stable on replay).
            parts = chunks([m for job in jobs for m in job.messages], MAX_PROMPT_CHARS)
            if len(parts) > extractor.calls_left:
                log.info("long batch: only its newest parts are read", extra={"parts": len(parts), "read": extractor.calls_left})
                parts = parts[len(parts) - extractor.calls_left:]
            found = []
            critical = self.rule(first.rule).critical
            for part in parts:
                found += await verified(extractor, await extractor.extract(part, jobs[-1].reply), part, critical)
            told = [e for job in jobs for e in said[job.id]]
            items = [Sourced(c, first.id, i, first.request_id, first.session, source_of(c.text, told)) for i, c in enumerate(found)]
        cause = f"job:{first.id}" if len(jobs) == 1 else f"job:{first.id}-{jobs[-1].id}"
        judge = extractor.judge if isinstance(extractor, LLMExtractor) else None
        parents = tuple(dict.fromkeys(job.trace_parent for job in jobs if job.trace_parent))
        return Group(first.tenant, first.user, first.agent, items, cause, judge, learned=first.created_at, trace_parents=parents,
                     critical=self.rule(first.rule).critical)
