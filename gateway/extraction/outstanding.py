"""Which job ids are still outstanding, oldest first, and who waits for "every job up to N is done"."""

from __future__ import annotations

import asyncio
import heapq
from typing import Container


class Outstanding:
    """Job ids grow monotonically (SQLite AUTOINCREMENT), so a flush is a mark: the newest id at the
    time of the call; it is over once the oldest outstanding id is past it."""

    def __init__(self, outstanding: Container[int]) -> None:
        self.last_id = 0
        self._ids = outstanding  # the queue's own record of outstanding jobs, read only here
        self._heap: list[int] = []  # ids ever added, with lazy deletion of those no longer outstanding
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def seen(self, job_id: int) -> None:
        """An id exists (in SQLite) even if it is not outstanding: later flushes wait up to it."""
        self.last_id = max(self.last_id, job_id)

    def add(self, job_id: int) -> None:
        self.seen(job_id)
        heapq.heappush(self._heap, job_id)

    def done(self) -> None:
        """A job stopped being outstanding: wake the flushes it was the last one for."""
        if self._waiters:
            oldest = self.oldest()
            for mark, future in self._waiters:
                if (oldest is None or oldest > mark) and not future.done():
                    future.set_result(None)
            self._waiters = [(mark, future) for mark, future in self._waiters if not future.done()]

    def oldest(self) -> int | None:
        while self._heap and self._heap[0] not in self._ids:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    async def wait(self, timeout: float | None) -> bool:
        """Until every id up to the newest seen now is done; False on timeout."""
        mark, oldest = self.last_id, self.oldest()
        if oldest is None or oldest > mark:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((mark, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False
