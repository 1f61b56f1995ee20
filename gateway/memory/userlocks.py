"""One asyncio lock per (tenant, user): a writer holds its users' locks across the checks and the
commits they allow, so a forget never interleaves with a write of the same user."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Iterable

Key = tuple[str, str]


class UserLocks:
    def __init__(self) -> None:
        self._locks: dict[Key, asyncio.Lock] = {}
        self._holders: dict[Key, int] = {}  # holders and waiters: a lock nobody wants is dropped

    @contextlib.asynccontextmanager
    async def hold(self, keys: Iterable[Key]) -> AsyncIterator[None]:
        ordered = sorted(set(keys))  # one global order: two writers of several users never deadlock
        for key in ordered:
            self._holders[key] = self._holders.get(key, 0) + 1
            self._locks.setdefault(key, asyncio.Lock())
        acquired: list[Key] = []
        try:
            for key in ordered:
                await self._locks[key].acquire()
                acquired.append(key)
            yield
        finally:
            for key in acquired:
                self._locks[key].release()
            for key in ordered:
                self._holders[key] -= 1
                if not self._holders[key]:
                    del self._holders[key], self._locks[key]


__all__ = ["UserLocks"]
