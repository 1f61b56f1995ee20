"""The extraction side of the gateway as one object the app opens in its lifespan: the SQLite file,
history, the job queue and its workers, and the admin routes that report on them."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

import aiosqlite
from starlette.routing import Route

from gateway.config import Settings
from gateway.sqlite import instance_id, open_db, open_request_writer
from gateway.errors import Unavailable
from gateway.exchange import ChatContext, Reply
from gateway.memory.history import History
from gateway.extraction.jobs import JobBounds
from gateway.extraction.learner import Learner
from gateway.metrics import Metrics
from gateway.extraction.queue import JobQueue
from gateway.extraction.reconcile import Reconciler
from gateway.upstream import Upstream


class Extraction:
    def __init__(self, settings: Settings, metrics: Metrics, upstream: Upstream) -> None:
        self.settings = settings
        self.metrics = metrics
        self.upstream = upstream
        self.db: aiosqlite.Connection | None = None
        self.history: History | None = None
        self.queue: JobQueue | None = None
        self.request_writer: sqlite3.Connection | None = None

    async def open(self, memory: Any) -> None:
        """Open SQLite, attach history to `memory` (the MemoryService), recover and start the queue."""
        s = self.settings
        self.db = await open_db(s.sqlite_path)
        self.request_writer = open_request_writer(s.sqlite_path)
        self.history = History(self.db)
        memory.history = self.history
        learner = Learner(s, self.upstream, Reconciler(memory, await instance_id(self.db)))
        self.queue = JobQueue(self.db, self.metrics, learner, default_extractor=s.extractor, workers=s.extraction_workers, max_jobs=s.queue_max,
                              bounds=JobBounds(s.max_job_messages, s.max_job_bytes), dead_letter_retention=s.dead_letter_retention,
                              has_extraction_key=bool(s.extraction_api_key), backoff=s.extraction_retry_seconds, request_writer=self.request_writer)
        await self.queue.start()

    async def aclose(self) -> None:
        if self.queue is not None:
            await self.queue.stop()
        if self.request_writer is not None:
            self.request_writer.close()
        if self.db is not None:
            await self.db.close()

    async def capture(self, ctx: ChatContext, payload: dict[str, Any], reply: Reply) -> None:
        """The MemoryLayer's `capture`: enqueue durably (a no-op before open or after close)."""
        if self.queue is not None:
            await self.queue.enqueue(ctx, payload, reply)

    def routes(self, memory: Callable[[], Any]) -> list[Route]:
        """Admin routes (queue state, flush, memory history); `memory` returns the MemoryService once open."""
        from gateway.admin.operations import admin_queue_routes

        return admin_queue_routes(self.settings.admin_token, self.metrics, self, memory)

    def require_open(self) -> tuple[JobQueue, History]:
        if self.queue is None or self.history is None:
            raise Unavailable("extraction is not running")
        return self.queue, self.history

