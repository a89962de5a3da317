"""The messages waiting to be written to one side of a bidirectional stream: in order, but for one
urgent message that goes ahead of them all.

A worker and an agent-service replica measure their contact by the worker's heartbeats and the
replica's acknowledgements of them. Both share the stream with run messages (assignments, controls,
updates, logs), and behind a burst of those a heartbeat or its acknowledgement would arrive late
enough for the worker to take a live replica for gone and stop every run it owns. So each is put
in the urgent slot: a newer one replaces one not yet written (the newer says all the older said),
and `get` returns it before anything queued."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class StreamQueue(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._urgent: T | None = None
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items) + (self._urgent is not None)

    def put(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    def put_urgent(self, item: T) -> None:
        """Puts `item` ahead of everything queued, in place of the urgent item not yet taken."""
        self._urgent = item
        self._ready.set()

    async def get(self) -> T:
        while True:
            if self._urgent is not None:
                item, self._urgent = self._urgent, None
                return item
            if self._items:
                return self._items.popleft()
            self._ready.clear()
            await self._ready.wait()

    def drain(self) -> list[T]:
        """Empties the queue: the queued items in order (the urgent item is dropped)."""
        items = list(self._items)
        self._items.clear()
        self._urgent = None
        return items
