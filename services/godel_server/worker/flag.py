"""A one-bit signal a run's coroutines wait on (stopped, ended, running, changed).

asyncio.Event does the same with a waiter deque allocated up front (~0.6 KiB) and an instance
dict; a worker holding thousands of runs keeps four per run, and these are almost never waited
on by more than one coroutine. A Flag allocates its waiters only when someone waits."""

from __future__ import annotations

import asyncio

__all__ = ["Flag"]


class Flag:
    """asyncio.Event's is_set / set / clear / wait, for one event loop."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Sets the flag and wakes every coroutine waiting for it (also if cleared right after)."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Returns at once when the flag is set, else once it is set."""
        if self._set:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
