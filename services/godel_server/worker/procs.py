"""Process groups of runs: spawning children that die with the worker, signalling whole groups, and
killing what a worker that is gone left running (found by the owner mark in their environment)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import sys
from functools import lru_cache
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


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, session, ... (None: gone)."""
    try:
        # comm may contain spaces and parentheses.
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


# Each process spawn_group starts carries GODEL_WORKER=<worker pid>:<its start time>:<worktree root> in
# its environment (for a sandbox: bwrap's own, outside the sandbox). The death signal alone does not
# cover a worker killed at any instant: bwrap running as root loses it while it sets the sandbox up,
# and a worker dying in those milliseconds leaves the whole sandbox running (about half the time when
# killed within 6 ms of a spawn, measured here). A worker starting on a root kills those leftovers.
OWNER_VARIABLE = "GODEL_WORKER"
_OWNER_PREFIX = f"{OWNER_VARIABLE}=".encode()
_START_TIME = 19  # index in _stat(): clock ticks after boot; with the pid, names one process for good


@lru_cache(maxsize=8)
def _owner(pid: int, root: str) -> str:
    fields = _stat(pid)
    return f"{pid}:{fields[_START_TIME] if fields else 0}:{root}"


def owner_env(root: Path) -> dict[str, str]:
    """The environment entry marking a process as started by this worker on `root`."""
    return {OWNER_VARIABLE: _owner(os.getpid(), os.path.abspath(root))}


def _running(pid: str, start_time: str) -> bool:
    """True when the process `pid` started at `start_time` still runs (a zombie has ended)."""
    fields = _stat(int(pid)) if pid.isdigit() else None
    return fields is not None and fields[0] != "Z" and fields[_START_TIME] == start_time


def _owner_of(pid: int) -> str | None:
    try:
        environ = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(_OWNER_PREFIX):
            return entry[len(_OWNER_PREFIX) :].decode(errors="replace")
    return None


def kill_leftovers(root: Path) -> list[int]:
    """Kills what workers on `root` that are gone left running: the process group of each process
    they marked when that group is a session of its own (as spawn_group makes them), else that
    process alone; returns the process groups (or processes) killed. Workers sharing a root do not
    kill each other's runs: a live owner's processes are left alone."""
    mine = owner_env(root)[OWNER_VARIABLE]
    root_text = os.path.abspath(root)
    killed: list[int] = []
    with contextlib.suppress(OSError):
        entries = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
        for pid in entries:
            owner = _owner_of(pid)
            if owner is None or owner == mine:
                continue
            owner_pid, _, rest = owner.partition(":")
            start_time, _, owner_root = rest.partition(":")
            if owner_root != root_text or _running(owner_pid, start_time):
                continue
            fields = _stat(pid)
            if fields is None or fields[0] == "Z":
                continue
            pgid, session = int(fields[2]), int(fields[3])
            if pgid == session and pgid > 1:
                if pgid not in killed and signal_group(pgid, signal.SIGKILL):
                    killed.append(pgid)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
    if killed:
        log.warning("killed what a previous worker left running", extra={"pgids": killed})
    return killed


# Open files a run holds: its output pipes, stdin and the pidfd its exit is learnt from.
FILES_PER_RUN = 4
# Open files the worker needs besides its runs (streams, logs, git, the journal).
FILES_BESIDES_RUNS = 256
UNLIMITED_FILES = 1 << 20


def raise_open_files_limit(capacity: int) -> int:
    """Raises the soft limit on open files to the hard one (the usual soft default, 1,024, would
    refuse a few hundred agents), and the hard one too when `capacity` runs need more and the
    worker may; warns when they may still not fit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FILES if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning(
                "cannot raise the open files limit", extra={"soft": soft, "hard": hard, "error": str(exc)}
            )
    needed = capacity * FILES_PER_RUN + FILES_BESIDES_RUNS
    if needed > soft:
        # Allowed with CAP_SYS_RESOURCE (root, as in most containers), up to fs.nr_open; without
        # it the warning below says what to raise.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            soft = needed
    if needed > soft:
        log.warning(
            f"the worker may open {soft} files, and {capacity} runs (GODEL_WORKER_CAPACITY) need "
            f"about {needed}: raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower the capacity",
            extra={"open_files_limit": soft, "capacity": capacity},
        )
    return soft


def watch_children_with_pidfds() -> bool:
    """Has asyncio learn of child exits from pidfds in the event loop: Python 3.11's default watcher
    runs a thread per child, so a thousand agents meant a thousand threads and every git command
    started one more (Python 3.12 uses pidfds already). False when the kernel has no pidfds."""
    if sys.version_info >= (3, 12):
        return True
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return True


async def spawn_group(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    root: Path,
    merge_stderr: bool = False,
    stdin: bool = False,
) -> asyncio.subprocess.Process:
    """Starts argv as the leader of a new session and process group (pgid == pid) that dies with the
    worker, marked as this worker's on worktree `root` (see kill_leftovers); stdout and stderr are
    pipes (stderr merged into stdout when `merge_stderr`), stdin a pipe when `stdin`, else /dev/null."""
    return await asyncio.create_subprocess_exec(
        *with_death_signal(argv),
        cwd=cwd,
        env={**env, **owner_env(root)},
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
