"""Process groups of runs: spawning children that die with the worker, signalling whole groups, and
killing groups left behind by a previous worker incarnation (recorded in <worktree root>/.pids/)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# Children must die with the worker (prctl PR_SET_PDEATHSIG). Running Python code between fork and
# exec (preexec_fn) is not safe in a process with gRPC threads (it can crash the child), so children
# start through this tiny exec shim instead: it sets the death signal, checks that the worker is still
# its parent, then execs the real argv (exit 127 with a message on stderr when that is impossible).
_SHIM = """import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    os._exit(137)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"cannot start {sys.argv[2]!r}: {exc.strerror}\\n")
    os._exit(127)
"""


# util-linux's setpriv sets the same death signal natively, ~7x cheaper than starting Python (it
# cannot check the parent: a worker dying in that instant leaves the run to its successor's
# leftover sweep).
_SETPRIV = shutil.which("setpriv")


def with_death_signal(argv: list[str]) -> list[str]:
    """argv wrapped so that the process is SIGKILLed when the worker dies."""
    if not sys.platform.startswith("linux"):
        return argv
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    return [sys.executable, "-I", "-S", "-c", _SHIM, str(os.getpid()), *argv]


def signal_group(pgid: int, sig: int) -> bool:
    """Sends `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("cannot signal process group", extra={"pgid": pgid, "signal": sig})
        return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        return marker in (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


class PidFiles:
    """<root>/.pids/<worker pid>/<run_id>: the process groups of a run, one pgid per line, so that a
    restarted worker can kill what a dead worker on the same root left running."""

    def __init__(self, root: Path) -> None:
        # One directory per worker process: workers sharing a root must not kill each other's runs.
        self.base = root / ".pids"
        self.dir = self.base / str(os.getpid())

    def write(self, run_id: str, pgids: Iterable[int]) -> None:
        pgids = list(pgids)
        path = self.dir / run_id
        if not pgids:
            path.unlink(missing_ok=True)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{p}\n" for p in pgids))
        tmp.replace(path)

    def remove(self, run_id: str) -> None:
        (self.dir / run_id).unlink(missing_ok=True)

    def kill_leftovers(self) -> list[int]:
        """Kills the process groups recorded by a previous worker on this root that still run (only
        processes whose environment carries that run's GODEL_RUN_ID), then deletes the files."""
        killed: list[int] = []
        if not self.base.is_dir():
            return killed
        for worker_dir in self.base.iterdir():
            if worker_dir == self.dir or not worker_dir.is_dir() or _alive(worker_dir.name):
                continue
            killed.extend(self._kill_recorded(worker_dir))
            with contextlib.suppress(OSError):
                worker_dir.rmdir()
        if killed:
            log.warning("killed process groups left by a previous worker", extra={"pgids": killed})
        return killed

    def _kill_recorded(self, directory: Path) -> list[int]:
        killed: list[int] = []
        for path in directory.iterdir():
            if path.suffix == ".tmp":
                path.unlink(missing_ok=True)
                continue
            marker = f"GODEL_RUN_ID={path.name}".encode()
            with contextlib.suppress(OSError, ValueError):
                for line in path.read_text().split():
                    pgid = int(line)
                    if pgid > 1 and any(_environ_has(pid, marker) for pid in group_members(pgid)):
                        signal_group(pgid, signal.SIGKILL)
                        killed.append(pgid)
            path.unlink(missing_ok=True)
        return killed


def _alive(pid_text: str) -> bool:
    """True when the directory name is the pid of a live process (other than a zombie)."""
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"]


async def spawn_group(
    argv: list[str], cwd: Path, env: dict[str, str], merge_stderr: bool = False, stdin: bool = False
) -> asyncio.subprocess.Process:
    """Starts argv as the leader of a new process group (pgid == pid) that dies with the worker;
    stdout and stderr are pipes (stderr merged into stdout when `merge_stderr`), stdin a pipe when
    `stdin`, else /dev/null."""
    return await asyncio.create_subprocess_exec(
        *with_death_signal(argv),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True,
    )


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"
