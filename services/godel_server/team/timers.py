"""Wake-ups of the team service (workflow retries and deadlines, team timeouts): one pending
timer per key, the earliest wins. They live in memory, in the replica that drives the team or
workflow; what they wait for is stored, so the replica that takes it over (a restarted one, or
another: team/replicas.py) arms them again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Timers:
    def __init__(self, wake: Callable[[str], Awaitable[None]]) -> None:
        self._wake = wake
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self, key: str, delay: float) -> None:
        """Wakes `key` in `delay` seconds, unless it is already due to wake earlier."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        current = self._handles.get(key)
        if current is not None:
            if current.when() <= when:
                return
            current.cancel()
        self._handles[key] = loop.call_at(when, self._fire, key)

    def disarm(self, key: str) -> None:
        handle = self._handles.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, key: str) -> None:
        self._handles.pop(key, None)
        task = asyncio.ensure_future(self._wake(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
