"""The limits watchdog: samples the process trees of the runs (from /proc) a few times a second and
stops a run, saying why, when its tree goes over its memory, process or CPU-time limit.

rlimits alone cannot do this: they bound each process, not the tree, and an allocation or fork that
fails leaves a failing program, not a reason. Without cgroups (none with memory or pids controllers
on these machines) the tree is found through the parent links in /proc from its root, the bwrap
process the worker started; processes that left the tree's process group are still found.

One sampler per event loop samples every watched tree in one pass: a thread job per run every
WATCH_SECONDS was ten thousand /proc walks a second with a thousand agents, and the threads' share
of the GIL starved the worker's event loop (its heartbeats, its answers to kills). A pass reads each
process's /proc/<pid>/stat once (its parent, times and resident pages) and finds the trees from the
parent links: a walk per tree read three files per process (stat, the task list, each task's
children). The pass runs in the event loop itself, in slices of at most SLICE_SECONDS: in a thread,
every /proc read let go of the GIL, and the loop waited for it back. /proc reads do not block.
A pass that takes long spaces the passes out, so sampling takes at most SAMPLING_SHARE of the time.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from godel_server.worker.sandbox import MIB, Limits

WATCH_SECONDS = 0.1
SAMPLING_SHARE = 0.1
SLICE_SECONDS = 0.002
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """What a process tree uses now: live processes, resident memory, CPU time (incl. reaped children)."""

    processes: int = 0
    rss_bytes: int = 0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class _Process:
    ppid: int
    ticks: int  # utime + stime + cutime + cstime
    rss_pages: int


def read_stat(pid: str) -> _Process | None:
    """/proc/<pid>/stat, or None when the process is gone. os.open and os.read, not open(): most of
    a pass is these reads, and a buffered file object costs half as much again as the read."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # pid (comm) state ppid ...: after the comm, field 3 (state) is index 0, ppid (4) index 1, utime
    # (14) index 11, stime, cutime, cstime follow, rss (24) is index 21.
    fields = stat[stat.rfind(b")") + 2 :].split(b" ", 22)
    if len(fields) < 23:
        return None
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return _Process(int(fields[1]), ticks, int(fields[21]))


class ProcessTable:
    """Every process of the host (its /proc), by pid, and the children of each."""

    def __init__(self) -> None:
        self.processes: dict[int, _Process] = {}
        self.children: dict[int, list[int]] = {}

    def add(self, pid: int, process: _Process) -> None:
        self.processes[pid] = process
        self.children.setdefault(process.ppid, []).append(pid)

    def tree_usage(self, root: int) -> Usage:
        """Usage of `root` and all its descendants. CPU time counts utime + stime of the live
        processes and cutime + cstime of the children they reaped, so finished processes keep
        counting."""
        seen: set[int] = set()
        todo = [root]
        processes = rss_pages = ticks = 0
        while todo:
            pid = todo.pop()
            process = self.processes.get(pid)
            if process is None or pid in seen:
                continue
            seen.add(pid)
            processes += 1
            ticks += process.ticks
            rss_pages += process.rss_pages
            todo.extend(self.children.get(pid, ()))
        return Usage(processes, rss_pages * _PAGE, ticks / _TICKS)


def over_limit(usage: Usage, limits: Limits, overhead: int) -> str | None:
    """Why the tree is over its limits, or None; `overhead` processes of the sandbox do not count."""
    if limits.memory_mb and usage.rss_bytes > limits.memory_mb * MIB:
        return (
            f"memory limit exceeded: {usage.rss_bytes / MIB:.0f} MiB resident, "
            f"limit {limits.memory_mb} MiB (sandbox.limits.max_memory_mb)"
        )
    processes = usage.processes - overhead
    if limits.processes and processes >= limits.processes:
        return f"process limit reached: {processes} processes, limit {limits.processes} (sandbox.limits.max_processes)"
    if limits.cpu_seconds and usage.cpu_seconds > limits.cpu_seconds:
        return (
            f"CPU time limit exceeded: {usage.cpu_seconds:.1f} s, "
            f"limit {limits.cpu_seconds} s (sandbox.limits.max_cpu_seconds)"
        )
    return None


def pause_after(elapsed: float, interval: float = WATCH_SECONDS) -> float:
    """How long the sampler waits after a pass that took `elapsed` seconds."""
    return max(interval, elapsed * (1 / SAMPLING_SHARE - 1))


async def process_table() -> ProcessTable:
    """Reads every process's /proc/<pid>/stat once, in the event loop, in slices of at most
    SLICE_SECONDS."""
    loop = asyncio.get_running_loop()
    table = ProcessTable()
    slice_began = loop.time()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        process = read_stat(name)
        if process is not None:
            table.add(int(name), process)
        if loop.time() - slice_began >= SLICE_SECONDS:
            await asyncio.sleep(0)
            slice_began = loop.time()
    return table


async def usage_of(roots: list[int]) -> dict[int, Usage]:
    """Usage of each tree, from one read of the process table."""
    table = await process_table()
    return {root: table.tree_usage(root) for root in roots}


class Sampler:
    """Samples the trees asked for since its last pass, all in one pass (module docstring)."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._wanted: dict[int, list[asyncio.Future[Usage]]] = {}
        self._task: asyncio.Task[None] | None = None

    def next_usage(self, root: int) -> asyncio.Future[Usage]:
        """The tree's usage as of the next pass."""
        future: asyncio.Future[Usage] = asyncio.get_running_loop().create_future()
        self._wanted.setdefault(root, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._passes(), name="limits-sampler")
        return future

    async def _passes(self) -> None:
        loop = asyncio.get_running_loop()
        while self._wanted:
            wanted, self._wanted = self._wanted, {}
            began = loop.time()
            try:
                usages = await usage_of(list(wanted))
            except Exception as exc:
                # The watchers would wait for ever; each ends with the error instead.
                for future in (f for futures in wanted.values() for f in futures if not f.done()):
                    future.set_exception(exc)
                return
            for root, futures in wanted.items():
                for future in futures:
                    if not future.done():
                        future.set_result(usages[root])
            await asyncio.sleep(pause_after(loop.time() - began, self._interval))


_samplers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sampler] = weakref.WeakKeyDictionary()


async def watch(root: int, limits: Limits, overhead: int, stop: Callable[[str], None]) -> None:
    """Samples the tree of `root` until it is over a limit (then calls `stop(reason)`) or cancelled."""
    loop = asyncio.get_running_loop()
    sampler = _samplers.get(loop)
    if sampler is None:
        sampler = _samplers[loop] = Sampler(WATCH_SECONDS)
    while True:
        usage = await sampler.next_usage(root)
        if usage.processes == 0:
            return
        reason = over_limit(usage, limits, overhead)
        if reason is not None:
            stop(reason)
            return
