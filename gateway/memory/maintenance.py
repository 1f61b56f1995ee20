"""The memory service's background upkeep: usage counts folded into the store, and compaction."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

log = logging.getLogger("memgate.memory")

USAGE_FLUSH_SECONDS = 10.0  # use counts reach LanceDB in one commit per interval, not one per recall
# Every commit adds a fragment and every read opens each unindexed one (a GET apiece on object
# storage): compact after this many commits to the table by any replica (each replica's threshold
# jittered up to twice that, so they rarely compact at once), or after COMPACT_SECONDS when this one made any.
COMPACT_AFTER_COMMITS = 50
COMPACT_SECONDS = 600.0


async def maintain(service: Any) -> None:
    """Fold a MemoryService's usage counts in periodically; compact its tables after enough commits or time."""
    compacted, threshold = time.monotonic(), COMPACT_AFTER_COMMITS * random.uniform(1.0, 2.0)
    version = await service.store.version()
    while True:
        await asyncio.sleep(USAGE_FLUSH_SECONDS)
        try:
            await service.flush_usage()
            latest = await service.store.version()
            if latest - version >= threshold or (service.commits and time.monotonic() - compacted >= COMPACT_SECONDS):
                # Counted from the attempt, failed or not: one that lost to another replica's compaction waits
                # for the next commits rather than retrying against it (and the writers) every few seconds.
                service.commits, compacted, version = 0, time.monotonic(), latest
                await service.store.optimize()
                version = await service.store.version()
                await service.tombstones.optimize()
                if service.history is not None:
                    await service.history.optimize()
        except Exception:
            log.warning("memory maintenance failed; will retry", exc_info=True)
