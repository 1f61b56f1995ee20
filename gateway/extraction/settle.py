"""Settling confirmations: a user's yes or no, in the turn after a confirmation was shown, keeps the newly said
value of a critical fact or the stored one (gateway/memory/confirmations.py)."""

from __future__ import annotations

from typing import Any, Sequence

from gateway.extraction.critical import answer
from gateway.extraction.jobs import Job
from gateway.memory.confirmations import held_for


def said_last(job: Job) -> str:
    """The user's newest message in the job ('' when none)."""
    return next((m.text for m in reversed(job.messages) if m.source and m.role == "user"), "")


async def settle(memory: Any, jobs: Sequence[Job]) -> int:
    """Apply the answers in one user's jobs (oldest first) to their pending confirmations; returns how many were settled.
    An answer counts only for a confirmation an earlier request showed (not one first shown with the answer itself)."""
    settled = 0
    for job in jobs:
        # The job's own request loaded the user into the hot tier (MemoryService.hot): a peek, not a lookup.
        entry = memory.hot.entries.get((job.tenant, job.user))
        if entry is None or not entry.pending:
            continue
        verdict = answer(said_last(job))
        if verdict is None:
            continue
        for stored, said in entry.confirmations(job.agent):
            if memory.asked.before(said.id, job.request_id):
                await memory.settle(stored, said, verdict, f"job:{job.id}", learned=job.created_at)
                settled += 1
                # Values said before the one asked about are answered by the same yes or no: they go too.
                earlier = [m.id for m in entry.pending if held_for(m) == stored.id and m.id != said.id]
                await memory.remove(job.tenant, job.user, earlier, "delete", f"job:{job.id}:replaced")
    return settled
