"""The limits watchdog samples every watched process tree in one pass per interval, not one job per
run: with a thousand agents the per-run jobs were ten thousand /proc walks a second whose threads
starved the worker's event loop. The pass runs in the event loop, in short slices: in a thread each
/proc read handed the GIL over, and the loop waited for it back. A tree over its limit is still
stopped."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
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


async def test_one_pass_samples_every_tree(trees: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    executor = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    passes = 0
    real = limits.usage_of

    async def counted(roots: list[int]) -> dict[int, limits.Usage]:
        nonlocal passes
        passes += 1
        return await real(roots)

    monkeypatch.setattr(limits, "usage_of", counted)
    stopped: list[str] = []
    roomy = Limits(memory_mb=1_000_000)
    watchers = [asyncio.create_task(limits.watch(root, roomy, 0, stopped.append)) for root in trees]
    try:
        await asyncio.sleep(1.0)  # the window the passes are counted in
        # A pass per tree per interval would be at least TREES (one per watcher at once), and ~200
        # in the window; one pass per interval is at most ~10. No pass goes to a thread.
        assert 1 <= passes < TREES, passes
        assert executor.jobs == 0
        assert stopped == []
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


async def test_a_long_pass_lets_the_event_loop_run_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass over many processes gives the loop back every SLICE_SECONDS, in the loop's own thread."""
    events: list[str] = []
    loop_thread = threading.get_ident()
    real = limits.read_stat

    def slow_stat(pid: str) -> Any:
        assert threading.get_ident() == loop_thread
        events.append("read")
        began = time.perf_counter()
        while time.perf_counter() - began < limits.SLICE_SECONDS / 2:
            pass
        return real(pid)

    async def ticker() -> None:
        while True:
            events.append("tick")
            await asyncio.sleep(0)

    monkeypatch.setattr(limits, "read_stat", slow_stat)
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        usages = await limits.usage_of([os.getpid()])
    finally:
        ticking.cancel()
    assert usages[os.getpid()].processes >= 1
    reads = events.count("read")
    assert reads >= 20, reads  # every process of the host, this one among them
    longest = max(len(list(run)) for key, run in itertools.groupby(events) if key == "read")
    assert longest <= 5, (longest, "".join("R" if e == "read" else "." for e in events))  # ~2 a slice
    assert events.count("tick") > reads // 5


async def test_a_tree_is_found_through_the_parent_links(trees: list[int]) -> None:
    """A tree is its root and every descendant, even one that left the root's process group."""
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "setsid sleep 60 & sleep 60 & wait", start_new_session=True
    )
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while (usage := (await limits.usage_of([proc.pid]))[proc.pid]).processes < 3:
            assert asyncio.get_running_loop().time() < deadline, usage
            await asyncio.sleep(0.05)
    finally:
        table = await limits.process_table()
        tree, todo = [], [proc.pid]
        while todo:
            tree.append(pid := todo.pop())
            todo.extend(table.children.get(pid, ()))
        for pid in tree:  # the setsid one is not in the root's group
            os.kill(pid, signal.SIGKILL)
        await proc.wait()
    assert usage.processes == 3 and usage.rss_bytes > 0
    others = await limits.usage_of(trees)
    assert all(u.processes == 1 for u in others.values())


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
    async def broken(roots: list[int]) -> dict[int, limits.Usage]:
        raise RuntimeError("/proc unreadable")

    monkeypatch.setattr(limits, "usage_of", broken)
    with pytest.raises(RuntimeError, match="/proc unreadable"):
        await asyncio.wait_for(limits.watch(os.getpid(), Limits(processes=10), 0, lambda reason: None), 20)


def test_a_stat_read_is_parsed_after_a_command_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    program = tmp_path / "a) b (c"
    shutil.copy("/bin/sleep", program)
    proc = subprocess.Popen([str(program), "60"])
    try:
        deadline = time.monotonic() + 10
        while (stat := limits.read_stat(str(proc.pid))) is None or stat.rss_pages == 0:
            assert time.monotonic() < deadline, "the process never showed its stat"
            time.sleep(0.01)
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "a) b (c"
        resident = int(Path(f"/proc/{proc.pid}/statm").read_text().split()[1])
        assert stat.ppid == os.getpid() and stat.ticks >= 0
        assert 0.5 * resident <= stat.rss_pages <= 2 * resident  # resident pages, not the size or a limit
    finally:
        proc.kill()
        proc.wait()
    assert limits.read_stat(str(proc.pid)) is None
