"""The reaper: a worker's runs die with it, however it dies.

A run's processes get the death signal (PR_SET_PDEATHSIG), and bwrap --die-with-parent passes it
on, but not at every instant: the sandbox's inner bwrap (PID 1 of the sandbox) asks for its own
death signal only once it has set the sandbox up, so a worker killed in those milliseconds killed
the outer bwrap only, and the agent ran on with no worker (unsandboxed, a run's grandchildren have
no death signal at all). The next worker on the same worktree root swept them up; until then they
ran unwatched.

So the worker starts a small process that waits on a pipe only the worker holds open for writing.
When the worker stops, it says so on the pipe and the reaper exits. At end of file without that
word the worker is gone, whatever killed it: the reaper waits until it has exited and kills what
it left running (procs.kill_leftovers: the process groups carrying its owner mark). The reaper is
the standard library and procs.py alone (a bare interpreter, not the worker's imports), in a
session of its own, so a signal to the worker's process group spares it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import IO

from godel_server.worker import procs

STOPPED = b"stopped\n"
# How long the reaper waits for a worker that closed the pipe to exit before it sweeps anyway (a
# live owner's processes are left alone then).
EXIT_WAIT_SECONDS = 10.0

# argv: procs.py, the worker's pid, its start time, the worktree root, the word, the wait.
_REAPER = """import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("godel_worker_procs", sys.argv[1])
procs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(procs)
if sys.stdin.buffer.read() != sys.argv[5].encode():
    deadline = time.monotonic() + float(sys.argv[6])
    while procs._running(sys.argv[2], sys.argv[3]) and time.monotonic() < deadline:
        time.sleep(0.005)
    procs.kill_leftovers(Path(sys.argv[4]))
"""


class Reaper:
    """The reaper of this worker's runs on `root` (module docstring)."""

    def __init__(self, root: Path) -> None:
        mark = procs.owner_env(root)[procs.OWNER_VARIABLE]
        worker, started, _ = mark.split(":", 2)
        self._process = subprocess.Popen(
            [
                *(sys.executable, "-I", "-S", "-c", _REAPER, procs.__file__),
                *(worker, started, str(root), STOPPED.decode(), str(EXIT_WAIT_SECONDS)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def stopped(self) -> None:
        """The worker stopped its runs: the reaper ends without sweeping."""
        stdin: IO[bytes] | None = self._process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.write(STOPPED)
            with contextlib.suppress(OSError):
                stdin.close()
