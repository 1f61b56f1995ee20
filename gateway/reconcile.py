"""Reconcile candidate memories with what the user already has: refresh, supersede or add.

- near-duplicate of an active memory (same normalised text, or very close and adding no content
  word): refresh it, no new row;
- new value of the same slot, or a negation of an old statement: add the new one and supersede the
  old (history keeps it; superseded memories are never recalled);
- otherwise add.
Memory ids derive from the job and the candidate's position, so replaying a job writes nothing twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .extract import Candidate
from .slots import adds_nothing, conflicts, normalised
from .store import Memory

NAMESPACE = uuid.UUID("6f1c2a52-3c1e-4d8e-9b43-5b7d3f0e2a61")
DUPLICATE = 0.97  # cosine above which two statements are the same whatever their words
CLOSE = 0.85  # cosine above which a candidate adding no new content word restates an old memory
NEIGHBOURS = 8


def memory_id(instance: str, job_id: int, position: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{instance}:{job_id}:{position}"))


@dataclass
class Sourced:
    """A candidate with where it came from: the job it is attributed to and its position there."""

    candidate: Candidate
    job_id: int
    position: int
    request_id: str
    session: str | None = None


@dataclass
class Outcome:
    added: list[Memory] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (old id, new id)


class Reconciler:
    def __init__(self, memory: Any, instance: str) -> None:
        self.memory = memory  # MemoryService (gateway/memory.py)
        self.instance = instance

    async def apply(self, tenant: str, user: str, agent: str | None, items: Sequence[Sourced], cause: str) -> Outcome:
        """Write what `items` teach about one user; one store write for all the new memories."""
        outcome = Outcome()
        if not items:
            return outcome
        vectors = await self.memory.embedder.embed([s.candidate.text for s in items])
        now = time.time()
        new: list[Memory] = []
        refresh: dict[str, tuple[Memory, float]] = {}
        replace: list[tuple[Memory, Memory]] = []
        for sourced, vector in zip(items, vectors):
            c = sourced.candidate
            mid = memory_id(self.instance, sourced.job_id, sourced.position)
            found = await self.memory.nearest(tenant, user, vector, NEIGHBOURS)
            neighbours = [(m, s) for m, s in found if m.agent_id == agent and m.id not in {o.id for o, _ in replace}]
            neighbours += [(m, float(np.dot(m.vector, vector))) for m in new]
            same = next((m for m, score in neighbours if _same(c.text, m.text, score)), None)
            stale = [m for m, _ in neighbours if m is not same and conflicts(c.text, m.text)]
            if same is None:
                same = Memory(id=mid, tenant=tenant, user_id=user, text=c.text, kind=c.kind, agent_id=agent, session_id=sourced.session,
                              vector=np.asarray(vector, dtype=np.float32), created_at=now, updated_at=now, confidence=c.confidence,
                              source_request_id=sourced.request_id)  # the service flags instruction-like text
                new.append(same)
            elif same.id != mid and all(same is not m for m in new):
                # A restatement (or the replay of a job that already wrote it): no new row.
                prior = refresh.get(same.id, (same, same.confidence))[1]
                refresh[same.id] = (same, max(prior, c.confidence))
            for old in stale:
                if any(old is m for m in new):
                    new.remove(old)  # said and corrected in the same batch: keep only the correction
                else:
                    replace.append((old, same))
                    refresh.pop(old.id, None)
        # Written before anything is superseded: a crash in between leaves both, and the replay
        # (which finds its own new memory) supersedes the old one then. The service records
        # history and memories_written for each change.
        if new:
            outcome.added = await self.memory.write(new, cause=cause)
        for memory, confidence in refresh.values():
            await self.memory.update(tenant, user, memory.id, confidence=confidence, cause=cause, action="refresh")
            outcome.refreshed.append(memory.id)
        for old, successor in replace:
            await self.memory.supersede(tenant, user, old.id, successor.id, cause=cause, new_text=successor.text)
            outcome.superseded.append((old.id, successor.id))
        return outcome


def _same(new: str, old: str, score: float) -> bool:
    if normalised(new) == normalised(old):
        return True
    if conflicts(new, old):
        return False  # close in meaning is not the same when the slot's value changed
    return score >= DUPLICATE or (score >= CLOSE and adds_nothing(new, old))
