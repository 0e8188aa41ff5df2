"""Per-backend admission with priorities: at most `limit` requests in flight on a backend (a llama.cpp
server answers one at a time, so 1 by default); the others wait in that backend's queue, the highest
priority first and, within a priority, the oldest first. A released slot goes straight to the next
waiter, so under saturation a high-priority request waits behind no low-priority one that was queued.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter

from runner.node.frontdoor.routing import Backend

PRIORITIES = {"high": 0, "normal": 1, "low": 2}
DEFAULT_PRIORITY = "normal"


class Slots:
    def __init__(self, backend: Backend, limit: int = 1) -> None:
        self.backend, self.limit = backend, max(1, limit)
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.queued_by_priority: Counter[str] = Counter()

    async def acquire(self, priority: str) -> None:
        """Wait for a slot on this backend (counted in_flight once it has one)."""
        b = self.backend
        if b.in_flight < self.limit and not self._waiting:
            b.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (PRIORITIES[priority], next(self._seq), fut))
        b.queued += 1
        self.queued_by_priority[priority] += 1
        try:
            await fut  # release() hands its slot over: in_flight already counts this request
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot arrived as the client went away: pass it on
            raise
        finally:
            b.queued -= 1
            self.queued_by_priority[priority] -= 1

    def release(self) -> None:
        """Give the slot to the next live waiter, or free it."""
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)
                return
        self.backend.in_flight -= 1
