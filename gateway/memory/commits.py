"""Commits that lose a race to another writer are retried, not failed.

LanceDB retries a conflicting commit itself for up to 30 s; on slow object storage with several
replicas committing to one table that is not always enough, and an extraction batch that fails is
retried job by job, multiplying the commits that collided. Only the conflict is retried here: a
commit that failed wrote no version, so running it again is safe."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable, Hashable, Sequence

log = logging.getLogger("memgate.store")

ATTEMPTS = 4
FIRST_DELAY = 0.2  # seconds, doubled each attempt, jittered so racing writers spread out
CONFLICTS = ("Too many concurrent writers", "commit conflict")


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in CONFLICTS)


async def committed(operation: Callable[[], Awaitable[Any]], attempts: int = ATTEMPTS) -> Any:
    """Run `operation()` (one LanceDB commit), again after a random pause when another writer won the race."""
    for attempt in range(attempts):
        try:
            return await operation()
        except RuntimeError as exc:
            if attempt == attempts - 1 or not is_conflict(exc):
                raise
            delay = FIRST_DELAY * 2**attempt * random.uniform(0.5, 1.5)
            log.info("a commit lost a race to another writer; retrying", extra={"attempt": attempt + 1, "retry_in": round(delay, 2)})
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def first_stamps(keys: Sequence[Hashable], row_ids: Sequence[int], stamps: Sequence[Any]) -> dict[Hashable, Any]:
    """Per key, the stamp of its first committed row (the lowest row id). Two writers appending one key at once
    both commit; the later sees both rows on reading them back, and a writer whose stamp is not this one deletes its own."""
    first: dict[Hashable, tuple[int, Any]] = {}
    for key, row, stamp in zip(keys, row_ids, stamps):
        if key not in first or row < first[key][0]:
            first[key] = (row, stamp)
    return {key: stamp for key, (_, stamp) in first.items()}
