"""The worker learns of its children's exits from pidfds in its event loop: Python 3.11's default
child watcher ran a thread per child process (a thousand agents, a thousand threads, and a new
thread for every git command)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

CHILDREN = 20
# Starts CHILDREN `sleep` processes through asyncio and prints how many threads the process has
# while they run; argv[1] == "pidfd": after the worker's watch_children_with_pidfds().
SCRIPT = f"""
import asyncio, sys, threading
from godel_server.worker.procs import watch_children_with_pidfds

async def main() -> None:
    procs = [await asyncio.create_subprocess_exec("sleep", "30") for _ in range({CHILDREN})]
    print(threading.active_count())
    for proc in procs:
        proc.kill()
        await proc.wait()

if sys.argv[1] == "pidfd":
    assert watch_children_with_pidfds()
asyncio.run(main())
"""


def threads_with_children(watcher: str) -> int:
    done = subprocess.run([sys.executable, "-c", SCRIPT, watcher], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_children_start_no_thread_each() -> None:
    assert threads_with_children("pidfd") < 5
    if sys.version_info < (3, 12):  # the default this replaces, for contrast
        assert threads_with_children("default") > CHILDREN
