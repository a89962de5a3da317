"""The limits watchdog samples every watched process tree in one pass per interval (one thread job),
not one job per run: with a thousand agents the per-run jobs were ten thousand /proc walks a second
whose threads starved the worker's event loop. A tree over its limit is still stopped."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from godel_server.worker import limits
from godel_server.worker.sandbox import Limits

pytestmark = pytest.mark.timeout(60)

TREES = 20


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.jobs = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
async def trees() -> AsyncIterator[list[int]]:
    """TREES process groups (a `sleep` each, its own session): their roots."""
    procs = [
        await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True) for _ in range(TREES)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_one_pass_samples_every_tree(trees: list[int]) -> None:
    executor = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    stopped: list[str] = []
    roomy = Limits(memory_mb=1_000_000)
    watchers = [asyncio.create_task(limits.watch(root, roomy, 0, stopped.append)) for root in trees]
    try:
        await asyncio.sleep(1.0)  # the window the jobs are counted in
        # A job per tree per interval would be at least TREES jobs (one per watcher at once), and
        # ~200 in the window; one pass per interval is at most ~10.
        assert 1 <= executor.jobs < TREES, executor.jobs
        assert stopped == []
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


async def test_a_tree_over_its_process_limit_is_stopped_with_the_reason() -> None:
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "sleep 60 & sleep 60 & wait", start_new_session=True
    )
    stopped: list[str] = []
    try:
        await asyncio.wait_for(limits.watch(proc.pid, Limits(processes=2), 0, stopped.append), 20)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert len(stopped) == 1 and stopped[0].startswith("process limit reached: 3 processes"), stopped


def test_a_long_pass_spaces_the_passes_out() -> None:
    assert limits.pause_after(0.01) == limits.WATCH_SECONDS
    # Sampling takes at most SAMPLING_SHARE of the time: a 1 s pass waits 3 s.
    assert limits.pause_after(1.0) == pytest.approx(1.0 / limits.SAMPLING_SHARE - 1.0)


async def test_a_pass_that_fails_ends_its_watchers_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(roots: list[int]) -> dict[int, limits.Usage]:
        raise RuntimeError("/proc unreadable")

    monkeypatch.setattr(limits, "usage_of", broken)
    with pytest.raises(RuntimeError, match="/proc unreadable"):
        await asyncio.wait_for(limits.watch(os.getpid(), Limits(processes=10), 0, lambda reason: None), 20)
