"""The durable extraction queue: jobs committed to SQLite before a response finishes, drained by workers.

Scheduling lives in memory (this process owns its SQLite file; replicas each keep their own queue);
SQLite is the durable record. One user's jobs run in order and never on two workers at once; a
user's waiting jobs are coalesced into one batch (one extraction call, one store write).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import aiosqlite

from gateway.sqlite import write
from gateway.exchange import ChatContext, Reply
from gateway.extraction.jobs import INSERT_JOB, Job, JobBounds, job_from_row, job_messages, job_row
from gateway.metrics import Metrics
from gateway.extraction.outstanding import Outstanding

log = logging.getLogger("memgate.queue")

UserKey = tuple[str, str]
MAX_BATCH = 16  # one user's jobs coalesced into one extraction call
MAX_USERS = 32  # users a worker takes at once: their new memories go into the store in one commit
MAX_ATTEMPTS = 5  # then the job is a dead letter (kept in SQLite for inspection, for a while)
PURGE_INTERVAL = 3600.0  # seconds between dead-letter purges (down to 1 s when the retention is shorter)
LINGER = 0.02  # seconds between enqueue and the job becoming runnable


@dataclass
class _Pending:
    """What the scheduler keeps per outstanding job (the rest stays in SQLite)."""

    key: UserKey
    group: tuple[str | None, str]  # (agent, extractor): only jobs of one group are coalesced
    created_at: float


Process = Callable[[list[list[Job]]], Awaitable[None]]  # several users' batches, each in job order


class JobQueue:
    def __init__(self, db: aiosqlite.Connection, metrics: Metrics, process: Process, *, default_extractor: str, workers: int, max_jobs: int,
                 bounds: JobBounds, dead_letter_retention: float, has_extraction_key: bool,
                 backoff: float = 0.5, request_writer: sqlite3.Connection | None = None) -> None:
        self.db = db
        self.bounds = bounds
        self.dead_letter_retention = dead_letter_retention
        self.has_extraction_key = has_extraction_key  # then no job needs its caller's key
        self.request_writer = request_writer  # db.open_request_writer: enqueue without a thread hop
        self.metrics = metrics
        self.process = process
        self.default_extractor = default_extractor
        self.workers = workers
        self.max_jobs = max_jobs
        self.backoff = backoff
        self._jobs: dict[int, _Pending] = {}  # every outstanding (pending or running) job
        self._waiting: dict[UserKey, collections.deque[int]] = {}  # not yet claimed, in order
        self._ready: asyncio.Queue[UserKey] = asyncio.Queue()
        self._queued: set[UserKey] = set()  # keys in _ready, so a user is queued once
        self._busy: set[UserKey] = set()  # being processed, or waiting out a backoff
        self._solo: set[UserKey] = set()  # failed recently: retry one job at a time
        self._keys: dict[int, str] = {}  # caller API keys by job id: never written anywhere
        self.outstanding = Outstanding(self._jobs)  # _jobs' ids, oldest first, for flush()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.dead = 0
        self.failures = 0
        self.completed = 0
        self.dropped = 0
        self.recovered = 0
        self.purged = 0
        metrics.queue_depth.set_function(lambda: len(self._jobs))
        metrics.queue_oldest_age.set_function(self.oldest_age)
        metrics.dead_letters.set_function(lambda: self.dead)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover jobs a crash left running, load the backlog and start the workers."""
        cur = await self.db.execute("UPDATE jobs SET state = 'pending' WHERE state = 'running'")
        self.recovered = cur.rowcount
        if self.recovered:
            log.warning("requeued extraction jobs left running by a previous process", extra={"jobs": self.recovered})
        sql = "SELECT id, tenant, user_id, agent_id, extractor, created_at, next_at FROM jobs WHERE state = 'pending' ORDER BY id"
        delays: dict[UserKey, float] = {}
        async with self.db.execute(sql) as rows:
            async for r in rows:
                key = (r["tenant"], r["user_id"])
                self._add(r["id"], key, (r["agent_id"], r["extractor"]), r["created_at"])
                delays.setdefault(key, r["next_at"])  # the user's first job decides when they may run
        async with self.db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'dead'") as rows:
            self.dead = (await rows.fetchone())[0]
        async with self.db.execute("SELECT MAX(id) FROM jobs") as rows:
            self.outstanding.seen((await rows.fetchone())[0] or 0)
        now = time.time()
        for key in self._waiting:
            self._schedule(key, max(0.0, delays.get(key, 0.0) - now))
        await self.purge_dead_letters()
        self._tasks = [asyncio.create_task(self._worker(), name=f"extraction-worker-{i}") for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._purger(), name="dead-letter-purger"))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the workers; a batch still running after `grace` seconds is cancelled and, being
        still `running` in SQLite, is picked up again on the next start."""
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()  # a worker waiting for work ends at once; one mid-batch ends at its next await
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        self._tasks = []

    # -- the request path -----------------------------------------------------------------------

    async def enqueue(self, ctx: ChatContext, payload: dict[str, Any], reply: Reply) -> bool:
        """Commit a job for this exchange; False (counted, logged) when there is nothing to learn,
        the queue is full or SQLite fails. Never raises: memory fails open."""
        user = ctx.identity.user
        if user is None:
            return False
        roles = tuple(ctx.rule.extract_roles)
        messages, cut = job_messages(payload, reply, roles, self.bounds)
        if cut:
            self.metrics.job_messages_cut.inc(cut)
        if not any(m.source for m in messages):
            self.metrics.captures_skipped.labels("nothing_to_extract", ctx.api).inc()
            return False
        if len(self._jobs) >= self.max_jobs:
            self.dropped += 1
            self.metrics.extraction_jobs.labels("dropped").inc()
            log.warning("extraction queue full: job dropped", extra={"request_id": ctx.request_id, "depth": len(self._jobs)})
            return False
        extractor = ctx.rule.extractor or self.default_extractor
        now = time.time()
        row = job_row(ctx, extractor, roles, messages, reply, now)
        try:
            job_id = await self._insert(row)
        except Exception:
            self.metrics.captures_skipped.labels("queue_error", ctx.api).inc()
            log.exception("extraction job not committed", extra={"request_id": ctx.request_id})
            return False
        if ctx.api_key and extractor == "llm" and not self.has_extraction_key:
            self._keys[job_id] = ctx.api_key  # the only job that will use it
        key = (ctx.identity.tenant, user)
        self._add(job_id, key, (ctx.identity.agent, extractor), now)
        self.metrics.extraction_jobs.labels("enqueued").inc()
        # Start a little later, not on the next loop turn: the response that enqueued this job is
        # still being sent, and a user's follow-up jobs get a chance to join the same batch.
        asyncio.get_running_loop().call_later(LINGER, self._schedule, key, 0.0)
        return True

    async def _insert(self, row: tuple[Any, ...]) -> int:
        if self.request_writer is not None:
            try:
                return int(self.request_writer.execute(INSERT_JOB, row).lastrowid)
            except sqlite3.OperationalError:
                pass  # a worker holds the write lock this instant: take the path that waits for it
        cur = await write(self.db, INSERT_JOB, row)
        return int(cur.lastrowid)

    # -- flush and state ------------------------------------------------------------------------

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job enqueued before this call is done (or dead); False on timeout."""
        return await self.outstanding.wait(timeout)

    def oldest_age(self) -> float:
        oldest = self.outstanding.oldest()
        return max(0.0, time.time() - self._jobs[oldest].created_at) if oldest in self._jobs else 0.0

    def state(self) -> dict[str, Any]:
        return {
            "depth": len(self._jobs),
            "running": self._running_count(),
            "users_waiting": len(self._waiting),
            "oldest_age_seconds": round(self.oldest_age(), 3),
            "completed": self.completed,
            "failures": self.failures,
            "dead_letters": self.dead,
            "dropped": self.dropped,
            "recovered_on_start": self.recovered,
            "dead_letters_purged": self.purged,
            "caller_keys_held": len(self._keys),
            "max_jobs": self.max_jobs,
            "workers": self.workers,
        }

    async def forget_user(self, tenant: str, user: str) -> int:
        """Drop a user's waiting and dead jobs. A batch of theirs already running is not waited for:
        the user's tombstone drops whatever it would write (MemoryService), and it deletes its jobs when it ends."""
        key = (tenant, user)
        ids = list(self._waiting.pop(key, ()))
        for job_id in ids:
            self._done(job_id)
        cur = await write(self.db, "DELETE FROM jobs WHERE tenant = ? AND user_id = ? AND state != 'running' RETURNING state", (tenant, user))
        states = [row[0] for row in await cur.fetchall()]
        self.dead -= states.count("dead")
        return len(states)

    async def purge_dead_letters(self) -> int:
        """Delete dead letters older than the retention, and the oldest past `max_jobs` of them: they
        hold conversation text and must not pile up outside the queue bound. Returns how many."""
        cur = await write(
            self.db,
            "DELETE FROM jobs WHERE state = 'dead' AND (next_at < ? OR id NOT IN (SELECT id FROM jobs WHERE state = 'dead' ORDER BY id DESC LIMIT ?))",
            (time.time() - self.dead_letter_retention, self.max_jobs))
        purged = max(0, cur.rowcount)
        if purged:
            self.dead -= purged
            self.purged += purged
            self.metrics.dead_letters_purged.inc(purged)
            log.info("dead letters purged", extra={"jobs": purged})
        return purged

    async def _purger(self) -> None:
        while True:
            await asyncio.sleep(min(PURGE_INTERVAL, max(1.0, self.dead_letter_retention)))
            try:
                await self.purge_dead_letters()
            except Exception:
                log.exception("dead-letter purge failed; trying again later")

    # -- internals ------------------------------------------------------------------------------

    def _add(self, job_id: int, key: UserKey, group: tuple[str | None, str], created_at: float) -> None:
        self._jobs[job_id] = _Pending(key, group, created_at)
        self._waiting.setdefault(key, collections.deque()).append(job_id)
        self.outstanding.add(job_id)

    def _running_count(self) -> int:
        waiting = sum(len(d) for d in self._waiting.values())
        return len(self._jobs) - waiting

    def _schedule(self, key: UserKey, delay: float) -> None:
        """Make a user runnable (now or after a backoff) unless already queued or busy."""
        if delay > 0:
            self._busy.add(key)  # hold the user: their later jobs must not overtake the one backing off

            def wake() -> None:
                self._timers.discard(timer)
                self._busy.discard(key)
                self._schedule(key, 0.0)

            timer = asyncio.get_running_loop().call_later(delay, wake)
            self._timers.add(timer)
            return
        if key in self._queued or key in self._busy or not self._waiting.get(key):
            return
        self._queued.add(key)
        self._ready.put_nowait(key)

    def _claim(self, key: UserKey) -> list[int]:
        waiting = self._waiting[key]
        first = waiting.popleft()
        ids = [first]
        group, api_key = self._jobs[first].group, self._keys.get(first, "")
        limit = 1 if key in self._solo else MAX_BATCH
        while waiting and len(ids) < limit and self._jobs[waiting[0]].group == group and self._keys.get(waiting[0], "") == api_key:
            ids.append(waiting.popleft())
        if not waiting:
            del self._waiting[key]
        return ids

    def _take_ready(self, first: UserKey) -> list[tuple[UserKey, list[int]]]:
        """Claim `first` and, unless it is retrying alone, other users ready right now."""
        keys = [first]
        if first not in self._solo:
            deferred = []
            while len(keys) < MAX_USERS and not self._ready.empty():
                key = self._ready.get_nowait()
                (deferred if key in self._solo else keys).append(key)
            for key in deferred:
                self._ready.put_nowait(key)
        claimed = []
        for key in keys:
            self._queued.discard(key)
            if key in self._busy or not self._waiting.get(key):
                continue
            self._busy.add(key)
            claimed.append((key, self._claim(key)))
        return claimed

    async def _worker(self) -> None:
        while True:
            claimed = self._take_ready(await self._ready.get())
            if not claimed:
                continue
            delays: dict[UserKey, float] = {}
            try:
                delays = await self._run(claimed)
            except Exception:
                # SQLite itself failed while recording the outcome: keep the jobs, try again later.
                log.exception("extraction worker error")
                for key, ids in claimed:
                    self._requeue(key, ids)
                    delays[key] = self.backoff
            finally:
                for key, _ in claimed:
                    self._busy.discard(key)
                    self._schedule(key, delays.get(key, 0.0))

    async def _run(self, claimed: list[tuple[UserKey, list[int]]]) -> dict[UserKey, float]:
        """Process the claimed batches together; returns how long each user must wait before their next job."""
        ids = [i for _, batch in claimed for i in batch]
        marks = ",".join("?" * len(ids))
        started = time.perf_counter()
        try:
            await write(self.db, f"UPDATE jobs SET state = 'running' WHERE id IN ({marks})", ids)
            jobs = {job.id: job for job in await self._load(ids)}
            batches = [[jobs[i] for i in batch if i in jobs] for _, batch in claimed]
            await self.process([b for b in batches if b])  # a user forgotten meanwhile has no rows left
        except asyncio.CancelledError:
            for key, batch in claimed:
                self._requeue(key, batch)  # still `running` in SQLite: a restart recovers them too
            raise
        except Exception as exc:
            return {key: await self._failed(key, batch, exc) for key, batch in claimed}
        self.metrics.extraction_duration.observe(time.perf_counter() - started)
        try:
            await write(self.db, f"DELETE FROM jobs WHERE id IN ({marks})", ids)
        except Exception:
            # The memories are written (idempotently); a replay after restart writes nothing twice.
            log.exception("could not mark extraction jobs done")
        self.completed += len(ids)
        self.metrics.extraction_jobs.labels("done").inc(len(ids))
        for key, _ in claimed:
            self._solo.discard(key)
        for job_id in ids:
            self._done(job_id)
        return {}

    async def _load(self, ids: list[int]) -> list[Job]:
        marks = ",".join("?" * len(ids))
        async with self.db.execute(f"SELECT * FROM jobs WHERE id IN ({marks}) ORDER BY id", ids) as cur:
            rows = await cur.fetchall()
        return [
            job_from_row(r, self._keys.get(r["id"], ""))
            for r in rows
        ]

    async def _failed(self, key: UserKey, ids: list[int], exc: Exception) -> float:
        """Count an attempt for each job of a failed batch: retry later (alone), or dead-letter."""
        self.failures += 1
        marks = ",".join("?" * len(ids))
        error = f"{type(exc).__name__}: {exc}"[:500]
        self._solo.add(key)
        async with self.db.execute(f"SELECT id, attempts FROM jobs WHERE id IN ({marks})", ids) as cur:
            attempts = {r["id"]: r["attempts"] + 1 for r in await cur.fetchall()}
        dead = [i for i in ids if attempts.get(i, MAX_ATTEMPTS) >= MAX_ATTEMPTS]
        retry = [i for i in ids if i not in dead]
        delay = self.backoff * 2 ** (max(attempts.values(), default=1) - 1)
        delay = min(delay, 300.0)
        if dead:
            # next_at becomes the time of death: the retention counts from it
            await write(self.db, f"UPDATE jobs SET state = 'dead', attempts = attempts + 1, next_at = ?, error = ? WHERE id IN ({','.join('?' * len(dead))})",
                        [time.time(), error, *dead])
            self.dead += len(dead)
            self.metrics.extraction_jobs.labels("dead").inc(len(dead))
            log.error("extraction jobs dead-lettered", extra={"jobs": len(dead), "error": error})
            for job_id in dead:
                self._done(job_id)
            if self.dead > self.max_jobs:
                await self.purge_dead_letters()
        if retry:
            await write(
                self.db, f"UPDATE jobs SET state = 'pending', attempts = attempts + 1, next_at = ?, error = ? WHERE id IN ({','.join('?' * len(retry))})",
                [time.time() + delay, error, *retry])
            self.metrics.extraction_jobs.labels("retry").inc(len(retry))
            log.warning("extraction failed, will retry", extra={"jobs": len(retry), "error": error, "retry_in": delay})
            self._requeue(key, retry)
        return delay if retry else 0.0

    def _requeue(self, key: UserKey, ids: list[int]) -> None:
        waiting = self._waiting.setdefault(key, collections.deque())
        waiting.extendleft(reversed([i for i in ids if i in self._jobs]))

    def _done(self, job_id: int) -> None:
        self._jobs.pop(job_id, None)
        self._keys.pop(job_id, None)
        self.outstanding.done()
