"""The worker's state directory: its identity and the journal of its unacknowledged run updates.

A restarted worker must come back as the same worker (the agent service then knows that a run the
worker no longer reports is gone, and accepts the updates the previous process left unsent), so
the identity lives on disk, beside the journal, in a directory one live worker holds at a time
(an exclusive flock, released by the kernel when the process dies, even by SIGKILL).

GODEL_WORKER_STATE_DIR names the directory; by default a worker takes the first of
`$GODEL_HOME/workers/0`, `/1`, ... that no live worker holds, so workers restarted on one host
take back their predecessors' directories. The identity is GODEL_WORKER_ID when set, else the one
recorded in the directory, else a new `worker-<hostname>-<random>` recorded there."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from godel_server.runtime.config import WORKER_ID_RE, WorkerSettings

ID_FILE = "worker-id"
LOCK_FILE = "lock"
JOURNAL_DIR = "runs"
MAX_SLOTS = 1024


class StateDirError(RuntimeError):
    """The state directory cannot be used (held by another live worker, or not writable)."""


@dataclass
class StateDir:
    path: Path
    worker_id: str
    _lock_fd: int | None = None

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL_DIR

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _lock(path: Path) -> int | None:
    """An exclusive lock on <path>/lock, or None when a live process holds it."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _identity(path: Path, explicit: str, hostname: str) -> str:
    id_file = path / ID_FILE
    if explicit:
        id_file.write_text(explicit + "\n")
        return explicit
    with contextlib.suppress(OSError):
        recorded = id_file.read_text().strip()
        if WORKER_ID_RE.match(recorded):
            return recorded
    host = re.sub(r"[^A-Za-z0-9.-]", "-", hostname)[:60] or "host"
    worker_id = f"worker-{host}-{os.urandom(4).hex()}"
    id_file.write_text(worker_id + "\n")
    return worker_id


def claim(settings: WorkerSettings) -> StateDir:
    """Takes the worker's state directory (see the module docstring)."""
    try:
        if settings.state_dir is not None:
            fd = _lock(settings.state_dir)
            if fd is None:
                raise StateDirError(
                    f"GODEL_WORKER_STATE_DIR {settings.state_dir} is held by another live worker"
                )
            path = settings.state_dir
        else:
            base = settings.home / "workers"
            for slot in range(MAX_SLOTS):
                fd = _lock(base / str(slot))
                if fd is not None:
                    path = base / str(slot)
                    break
            else:
                raise StateDirError(f"every state directory under {base} is held by a live worker")
        (path / JOURNAL_DIR).mkdir(exist_ok=True)
        return StateDir(path, _identity(path, settings.worker_id, settings.hostname), fd)
    except OSError as exc:
        raise StateDirError(f"cannot use the worker's state directory: {exc}") from exc
