"""The extraction side of the gateway, opened in the app's lifespan: the job queue and its workers,
over the SQLite file the app opened, writing through the memory service (and its shared history)."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

import aiosqlite

from gateway.config import Settings
from gateway.exchange import ChatContext, Reply
from gateway.extraction.jobs import JobBounds
from gateway.extraction.learner import Learner
from gateway.extraction.llm_status import LLMStatus
from gateway.extraction.queue import JobQueue
from gateway.extraction.reconcile import ChangeSpans, Reconciler, no_spans
from gateway.extraction.siblings import SiblingQueues
from gateway.extraction.summaries import LLMSummarizer
from gateway.memory.service import MemoryService
from gateway.metrics import Metrics
from gateway.rules import RuleSet
from gateway.sqlite import open_request_writer
from gateway.upstream import Upstream


class Extraction:
    """A running job queue, its llm status and session summarizer, built by `open`."""

    def __init__(
        self, queue: JobQueue, request_writer: sqlite3.Connection, llm_status: LLMStatus, summarize: LLMSummarizer,
        siblings: SiblingQueues | None = None,
    ) -> None:
        self.queue = queue
        self.request_writer = request_writer
        self.llm_status = llm_status
        self.summarize = summarize  # the memory layer's session summaries, when the request's extractor is llm
        self.siblings = siblings  # the other workers' queues with `--workers N`

    @classmethod
    async def open(
        cls, settings: Settings, metrics: Metrics, upstream: Upstream, db: aiosqlite.Connection, memory: MemoryService,
        spans: ChangeSpans = no_spans,
        rules: Callable[[], RuleSet] | None = None,
    ) -> Extraction:
        """Start the queue on `db` (recovering jobs a crash left running); its learner writes through `memory`,
        each kind of write inside one of `spans` (the tracing's memory spans), under the current `rules` of each job's rule."""
        s = settings
        request_writer = open_request_writer(s.sqlite_path)
        try:
            learner = Learner(s, upstream, Reconciler(memory, spans), metrics, rules)
            queue = JobQueue(db, metrics, learner, default_extractor=s.extractor, workers=s.extraction_workers, max_jobs=s.queue_max,
                             bounds=JobBounds(s.max_job_messages, s.max_job_bytes), dead_letter_retention=s.dead_letter_retention,
                             has_extraction_key=bool(s.extraction_api_key), backoff=s.extraction_retry_seconds, request_writer=request_writer)
            await queue.start()
        except BaseException:
            request_writer.close()
            raise
        return cls(queue, request_writer, learner.llm_status, LLMSummarizer(s, upstream, learner.llm_status),
                   SiblingQueues(s.sibling_sqlite_paths) if s.workers > 1 else None)

    async def aclose(self) -> None:
        """Stop the workers; the SQLite file stays open for its owner (the app's lifespan) to close."""
        await self.queue.stop()
        self.request_writer.close()

    async def capture(self, ctx: ChatContext, payload: dict[str, Any], reply: Reply) -> None:
        """The MemoryLayer's `capture`: enqueue the exchange durably."""
        await self.queue.enqueue(ctx, payload, reply)
