"""Reconcile candidate memories with what the user already has: refresh, supersede or add.

- near-duplicate of an active memory (same normalised text, or very close and adding no content
  word): refresh it, no new row;
- new value of the same slot, or a negation of an old statement: add the new one and supersede the
  old (history keeps it; superseded memories are never recalled);
- otherwise add.
A new memory's id derives from its scope and normalised text, so replaying a job writes nothing
twice and the same fact learned by two replicas at once is one row (the store's insert skips an id
already there); a fact said again after it was superseded makes that row active again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Collection, ContextManager, Iterable, Sequence

import numpy as np

from gateway.extraction.base import Candidate, ExtractionError
from gateway.extraction.critical import is_critical
from gateway.extraction.statements import adds_nothing, conflicts, normalised, opposed
from gateway.memory.confirmations import held_for, pending_on
from gateway.memory.records import Memory

log = logging.getLogger("memgate.reconcile")

NAMESPACE = uuid.UUID("6f1c2a52-3c1e-4d8e-9b43-5b7d3f0e2a61")
DUPLICATE = 0.97  # cosine above which two statements are the same whatever their words
CLOSE = 0.85  # cosine above which a candidate adding no new content word restates an old memory
OPPOSED = 0.7  # cosine above which a denial and an affirmation sharing a content word are about the same thing
AMBIGUOUS = 0.7  # cosine above which a case the text rules leave open goes to the judge (llm extractor only)
NEIGHBOURS = 8


def memory_id(tenant: str, user: str, agent: str | None, text: str) -> str:
    """The id of a learned fact: the same for every restatement (see `normalised`) in one scope, on every replica."""
    return str(uuid.uuid5(NAMESPACE, "\0".join((tenant, user, agent or "", normalised(text)))))


@dataclass
class Sourced:
    """A candidate with where it came from: the job it is attributed to and its position there."""

    candidate: Candidate
    job_id: int
    position: int
    request_id: str
    session: str | None = None
    episode: str | None = None  # the archival episode (the user's turn) it was extracted from


@dataclass
class Group:
    """One user's candidates from one batch of jobs."""

    tenant: str
    user: str
    agent: str | None
    items: Sequence[Sourced]
    cause: str
    # The llm extractor's second structured call: (statement, existing texts) -> ("same"|"replaces"|"new", index).
    judge: Callable[[str, Sequence[str]], Awaitable[tuple[str, int]]] | None = None
    # When the batch's oldest job was enqueued: if the user was forgotten since, nothing of it is written.
    learned: float = 0.0
    trace_parents: tuple[str, ...] = ()  # of the requests that queued the jobs: the write's spans link to them
    critical: tuple[str, ...] = ()  # the rule's `critical` categories: such changes wait for the user's confirmation


@dataclass
class Plan:
    new: list[Memory] = field(default_factory=list)
    causes: dict[str, str] = field(default_factory=dict)  # new memory id -> cause
    refresh: dict[str, tuple[Memory, float, str]] = field(default_factory=dict)  # id -> (memory, confidence, cause)
    replace: list[tuple[Memory, Memory, str]] = field(default_factory=list)  # (old, successor, cause)
    learned: dict[tuple[str, str], float] = field(default_factory=dict)  # (tenant, user) -> Group.learned
    ask: list[tuple[Memory, Memory, str]] = field(default_factory=list)  # (stored, held-back successor, cause): to confirm


# (operation, traceparents to link, memory texts) -> a span over one kind of write; tracing off: nothing.
ChangeSpans = Callable[[str, Collection[str], Sequence[str]], ContextManager[None]]


def no_spans(operation: str, links: Collection[str], texts: Sequence[str]) -> ContextManager[None]:
    return contextlib.nullcontext()


class Reconciler:
    def __init__(self, memory: Any, spans: ChangeSpans = no_spans) -> None:
        self.memory = memory  # MemoryService (gateway/memory/service.py)
        self.spans = spans

    async def unforgotten(self, batches: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """The batches (of jobs, oldest first) whose user was not forgotten after the oldest job was
        enqueued: a forgotten user's words are not sent to an extractor again (a retry, a replay)."""
        stones = await self.memory.tombstones.since({(jobs[0].tenant, jobs[0].user) for jobs in batches})
        return [jobs for jobs in batches if jobs[0].created_at > stones.get((jobs[0].tenant, jobs[0].user), 0.0)]

    async def apply(self, groups: Sequence[Group]) -> Plan:
        """Write what the groups teach: one store commit for every new memory of every user, then
        the (rarer) refreshes and supersedes. Returns what was done."""
        texts = [s.candidate.text for g in groups for s in g.items]
        if not texts:
            return Plan()
        vectors = iter(await self.memory.embedder.embed(texts))
        plan = Plan(learned={(g.tenant, g.user): g.learned for g in groups})
        # Users are independent: plan them concurrently, the cold ones read from LanceDB together first.
        await self.memory.warm_users([(g.tenant, g.user) for g in groups])
        await asyncio.gather(*(self._plan(group, [next(vectors) for _ in group.items], plan) for group in groups))
        await self._hold_critical(plan, {(g.tenant, g.user): g.critical for g in groups})
        # New rows go in before anything is superseded: a crash in between leaves both, and the
        # replay (which finds its own new memory by id) supersedes the old one then. The service
        # records history and memories_written for each change.
        # Every write passes when its batch was learned: the service drops those of a user forgotten since.
        parents = {(g.tenant, g.user): g.trace_parents for g in groups}

        def links(memories: Iterable[Memory]) -> set[str]:
            return {parent for m in memories for parent in parents.get((m.tenant, m.user_id), ())}

        written: set[str] = set()
        if plan.new:
            with self.spans("create_memory", links(plan.new), [m.text for m in plan.new]):
                written = {m.id for m in await self.memory.write(plan.new, cause=plan.causes, learned=plan.learned)}
                for m in plan.new:
                    # Stored already: active (a replay, another replica) or superseded (said again). One held back for
                    # confirmation stays held.
                    if m.id not in written and m.superseded_by is None:
                        await self.memory.revive(m.tenant, m.user_id, m.id, plan.causes[m.id], learned=plan.learned[(m.tenant, m.user_id)])
        if plan.refresh:
            refreshed = [memory for memory, _, _ in plan.refresh.values()]
            with self.spans("update_memory", links(refreshed), [m.text for m in refreshed]):
                for memory, confidence, cause in plan.refresh.values():
                    await self.memory.update(memory.tenant, memory.user_id, memory.id, confidence=confidence, cause=cause, action="refresh",
                                             learned=plan.learned[(memory.tenant, memory.user_id)])
        if plan.replace:
            # A superseded memory leaves recall for good (history keeps it): a delete, as memory spans see it.
            retired = [old for old, _, _ in plan.replace]
            with self.spans("delete_memory", links(retired), [m.text for m in retired]):
                for old, successor, cause in plan.replace:
                    await self.memory.supersede(old.tenant, old.user_id, old.id, successor.id, cause=cause, new_text=successor.text,
                                                learned=plan.learned[(old.tenant, old.user_id)])
        for old, successor, cause in plan.ask:
            if successor.id in written:  # not for a forgotten user, nor twice for a replayed job
                await self.memory.ask_to_confirm(old, successor, cause, learned=plan.learned[(old.tenant, old.user_id)])
        return plan

    async def _hold_critical(self, plan: Plan, critical: dict[tuple[str, str], tuple[str, ...]]) -> None:
        """A new memory that would replace a critical one is written held back, to be confirmed by the user
        (gateway/memory/confirmations.py); one already waiting for the same answer is not written again."""
        held: set[int] = set()
        for old, successor, cause in plan.replace:
            categories = critical.get((old.tenant, old.user_id), ())
            if not any(successor is m for m in plan.new) or not is_critical(old, successor.text, categories):
                continue
            held.add(id(successor))
            waiting = (await self.memory.hot.get(old.tenant, old.user_id)).pending
            if any(held_for(p) == old.id and normalised(p.text) == normalised(successor.text) for p in waiting):
                plan.new = [m for m in plan.new if m is not successor]
                continue
            successor.superseded_by = pending_on(old.id)
            plan.ask.append((old, successor, cause))
        plan.replace = [r for r in plan.replace if id(r[1]) not in held]

    async def _plan(self, group: Group, vectors: list[np.ndarray], plan: Plan) -> None:
        tenant, user, agent = group.tenant, group.user, group.agent
        now = time.time()
        new: list[Memory] = []  # this user's, in this batch
        replaced: set[str] = set()
        for sourced, vector in zip(group.items, vectors):
            c = sourced.candidate
            mid = memory_id(tenant, user, agent, c.text)
            found = await self.memory.nearest(tenant, user, vector, NEIGHBOURS)
            neighbours = [(m, s) for m, s in found if m.agent_id == agent and m.id not in replaced]
            neighbours += [(m, float(np.dot(m.vector, vector))) for m in new]
            same = next((m for m, score in neighbours if _same(c.text, m.text, score)), None)
            stale = [m for m, score in neighbours if m is not same and contradicts(c.text, m.text, score)]
            if same is None and not stale and group.judge is not None:
                same, stale = await _ask(group.judge, c.text, [m for m, score in neighbours if score >= AMBIGUOUS])
            if same is None:
                same = Memory(id=mid, tenant=tenant, user_id=user, text=c.text, kind=c.kind, agent_id=agent, session_id=sourced.session,
                              vector=np.asarray(vector, dtype=np.float32), created_at=now, updated_at=now, confidence=c.confidence,
                              source_request_id=sourced.request_id, source_episode=sourced.episode)  # the service flags instruction-like text
                new.append(same)
                plan.causes[mid] = group.cause
            elif all(same is not m for m in new) and (same.id != mid or same.source_request_id != sourced.request_id):
                # A restatement: no new row (a replay of the job that wrote it, same id and request, does nothing).
                prior = plan.refresh.get(same.id, (same, same.confidence, group.cause))[1]
                plan.refresh[same.id] = (same, max(prior, c.confidence), group.cause)
            for old in stale:
                if any(old is m for m in new):
                    new.remove(old)  # said and corrected in the same batch: keep only the correction
                else:
                    replaced.add(old.id)
                    plan.replace.append((old, same, group.cause))
                    plan.refresh.pop(old.id, None)
        plan.new += new


async def _ask(judge: Callable[[str, Sequence[str]], Awaitable[tuple[str, int]]], text: str, close: list[Memory]) -> tuple[Memory | None, list[Memory]]:
    """Let the judge settle a close call; when it cannot answer, the candidate is simply added."""
    if not close:
        return None, []
    try:
        action, index = await judge(text, [m.text for m in close])
    except ExtractionError:
        log.warning("reconcile judge failed; adding the memory as new")
        return None, []
    if action == "same":
        return close[index], []
    if action == "replaces":
        return None, [close[index]]
    return None, []


def contradicts(new: str, old: str, score: float) -> bool:
    """True when `new` replaces `old`: the text rules say so, or the two are close in meaning and one
    denies what the other affirms."""
    return conflicts(new, old) or (score >= OPPOSED and opposed(new, old))


def _same(new: str, old: str, score: float) -> bool:
    if normalised(new) == normalised(old):
        return True
    if contradicts(new, old, score):
        return False  # close in meaning is not the same when the slot's value changed
    return score >= DUPLICATE or (score >= CLOSE and adds_nothing(new, old))
