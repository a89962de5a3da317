"""A background task that runs one step every few seconds until it is stopped: a step that fails is
logged (with its stack trace, unless it is one of the `expected` errors) and the next one runs on
time. The services' monitors and federation loops are such tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        name: str,
        interval: float,
        step: Callable[[], Awaitable[object]],
        *,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        self.name = name
        self._interval = interval
        self._step = step
        self._expected = expected
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except self._expected as exc:
                log.info("background step incomplete", extra={"task": self.name, "error": str(exc)})
            except Exception:
                log.exception("background step failed", extra={"task": self.name})
            await asyncio.sleep(self._interval)
