"""Pause state of a run, and clocks that stop while the run is paused."""

from __future__ import annotations

import asyncio
import time

from godel_server.worker.flag import Flag


class PauseState:
    """Whether a run is paused; waiters can block until it runs and measure only active time."""

    def __init__(self, paused: bool = False) -> None:
        self._running = Flag(not paused)
        self._changed = Flag()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        if paused:
            self._running.clear()
        else:
            self._running.set()
        self._changed.set()
        self._changed = Flag()

    async def wait_running(self) -> None:
        """Returns at once when not paused, else when resumed."""
        await self._running.wait()

    async def wait_paused(self) -> None:
        """Returns at once when paused, else when paused next."""
        while not self.paused:
            await self._changed.wait()

    async def sleep_active(self, seconds: float) -> None:
        """Returns after `seconds` of time spent not paused."""
        remaining = seconds
        while remaining > 0:
            await self._running.wait()
            changed = self._changed
            start = time.monotonic()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return
            remaining -= time.monotonic() - start
