"""Which (tenant, user) scopes have rows in the store, so a first-time user costs no LanceDB query.

Every user's first request used to pay a filtered LanceDB read (10-30 ms, more under load) just to
learn there was nothing to recall; under a 64-client load most of them ran into the recall timeout.
The directory answers "certainly empty" from memory, and "maybe" (go and read) whenever unsure:
before its first scan finishes, and after another replica committed to the table until a rescan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable

import pyarrow as pa

log = logging.getLogger("memgate.scopes")
# Another replica's writes show up here (and in the hot tier) within this many seconds, plus
# LanceDB's read consistency interval.
REVALIDATE_SECONDS = 1.0
SCAN_SHARE = 20  # wait this many scan durations before the next scan
FAILED_SCAN_RETRY_SECONDS = 30.0


def _keys(pairs: pa.Table) -> set[int]:
    # Hashes, not strings: a million users cost tens of MB, and a collision only means one extra read.
    distinct = pairs.group_by(["tenant", "user_id"]).aggregate([])
    return {hash(pair) for pair in zip(distinct.column("tenant").to_pylist(), distinct.column("user_id").to_pylist())}


class ScopeDirectory:
    """Scopes known to have rows, as of a table version. Writers `note` their scopes after each commit."""

    def __init__(self, scan: Callable[[], Awaitable[pa.Table]], version: Callable[[], Awaitable[int]], foreign: Callable[[int, int], bool]) -> None:
        self._scan_pairs = scan
        self._version = version
        self._foreign = foreign
        self._known: set[int] = set()
        self.seen: int | None = None  # table version the directory is complete for; None while unsure
        self._checked = 0.0
        self._next_scan = 0.0
        self._scan: asyncio.Task[None] | None = None

    def note(self, scopes: Iterable[tuple[str, str]]) -> None:
        self._known.update(hash(s) for s in scopes)

    async def may_have(self, tenant: str, user: str) -> bool:
        """False only when the scope certainly had no rows at most REVALIDATE_SECONDS ago."""
        key = hash((tenant, user))
        if key in self._known:
            return True
        now = time.monotonic()
        if self.seen is not None and now - self._checked >= REVALIDATE_SECONDS:
            self._checked = now
            latest = await self._version()
            if self.seen is not None:
                # Our own commits were noted as they happened; anyone else's make the directory unsure.
                self.seen = None if self._foreign(self.seen, latest) else latest
        if self.seen is None:
            self.rescan()
            return True
        return key in self._known

    def rescan(self) -> None:
        """Start a scan unless one runs or the last one was too recent (a busy other replica would keep us scanning)."""
        if (self._scan is None or self._scan.done()) and time.monotonic() >= self._next_scan:
            self._scan = asyncio.create_task(self._rescan())

    async def _rescan(self) -> None:
        started = time.monotonic()
        try:
            version = await self._version()  # before the scan: anything committed later is rechecked
            self._known |= await asyncio.to_thread(_keys, await self._scan_pairs())
            self.seen, self._checked = version, time.monotonic()
            # Scans take at most ~5% of the time, however large the table.
            self._next_scan = time.monotonic() + max(REVALIDATE_SECONDS, SCAN_SHARE * (time.monotonic() - started))
        except Exception:
            self._next_scan = time.monotonic() + FAILED_SCAN_RETRY_SECONDS
            log.warning("scanning the store's users failed; first-time users are read from the store", exc_info=True)

    async def aclose(self) -> None:
        if self._scan is not None:
            self._scan.cancel()
            await asyncio.gather(self._scan, return_exceptions=True)


__all__ = ["ScopeDirectory"]
