"""The one way tests wait: poll a condition until a generous deadline, then fail with a message that
says what was awaited and what was last seen (never return quietly on a timeout); and read a child
process's output line by line with a deadline instead of a `readline()` that can block until the
suite's global timeout.

    agent_id = wait_for(lambda: steps(workflow)["s1"].get("agentId"), 60, "s1's agent")
    team = poll(lambda: get_team(team_id), lambda t: t["status"] in DONE, 120, "the team to end")
    await wait_for_async(lambda: not alive(pid), 10, "the process to die")
    lines = LineReader(process.stdout, "godel events tail")
    lines.wait_line(lambda line: agent_id in line, 30, "the agent's event")
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import IO, TypeVar

T = TypeVar("T")

__all__ = ["LineReader", "poll", "wait_for", "wait_for_async"]


def _timed_out(
    timeout: float, what: str, last: object, describe: Callable[[], object] | None
) -> AssertionError:
    seen = describe() if describe is not None else last
    return AssertionError(f"timed out after {timeout:g}s waiting for {what}; last seen: {seen!r}")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    describe: Callable[[], object] | None = None,
) -> T:
    """Calls `predicate` until it returns a truthy value and returns that value. After `timeout`
    seconds raises AssertionError naming `what` and the last value (or what `describe()` returns).
    Exceptions raised by `predicate` propagate at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, value, describe)
        time.sleep(interval)


def poll(
    fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str, *, interval: float = 0.1
) -> T:
    """Calls `fetch` until `done` holds for what it returned, and returns that. After `timeout`
    seconds raises AssertionError naming `what` and the last value fetched."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, value, None)
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    blocking: bool = False,
    describe: Callable[[], object] | None = None,
) -> T:
    """`wait_for` inside an event loop; `blocking=True` runs a predicate that does I/O in a thread."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate) if blocking else predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, value, describe)
        await asyncio.sleep(interval)


class LineReader:
    """Reads a text stream (a child's stdout) in a daemon thread; the test takes lines with a
    deadline. The end of the stream fails a wait at once, with the lines seen so far."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.name = name
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), name=f"lines-{name}", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        except (OSError, ValueError):  # the stream was closed under the reader
            pass
        finally:
            self._lines.put(None)

    def next_line(self, timeout: float, what: str) -> str:
        """The next line; AssertionError if none comes within `timeout` or the stream ends."""
        return self.wait_line(lambda _: True, timeout, what)

    def wait_line(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first next line for which `predicate` is true (earlier lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.name}: no line with {what} within {timeout:g}s; lines seen: {self.seen[-20:]!r}"
                )
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._lines.put(None)  # later waits fail at once too
                raise AssertionError(
                    f"{self.name} ended before a line with {what}; lines seen: {self.seen[-20:]!r}"
                )
            self.seen.append(line)
            if predicate(line):
                return line
