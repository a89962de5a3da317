"""What `make up` started, so that `make down` stops exactly those processes (and nothing else
that may have reused a PID since)."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class StartedProcess:
    name: str
    pid: int
    start_time: int  # field 22 of /proc/<pid>/stat: distinguishes a reused PID
    stop_signal: int = signal.SIGTERM


def proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def record(pid: int, name: str, stop_signal: int = signal.SIGTERM) -> StartedProcess:
    start = proc_start_time(pid)
    if start is None:
        raise RuntimeError(f"{name} (pid {pid}) is not running")
    return StartedProcess(name=name, pid=pid, start_time=start, stop_signal=stop_signal)


def is_running(p: StartedProcess) -> bool:
    return proc_start_time(p.pid) == p.start_time


def save(path: Path, processes: list[StartedProcess], info: dict[str, str]) -> None:
    path.write_text(json.dumps({"processes": [asdict(p) for p in processes], "info": info}, indent=2))


def load(path: Path) -> tuple[list[StartedProcess], dict[str, str]]:
    data = json.loads(path.read_text())
    return [StartedProcess(**p) for p in data["processes"]], dict(data.get("info", {}))


def stop(p: StartedProcess, timeout: float = 20.0) -> bool:
    """Signals the process group of `p` if it is still the process we started; True if it was."""
    if not is_running(p):
        return False
    try:
        os.killpg(p.pid, p.stop_signal)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while is_running(p) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_running(p):
        os.killpg(p.pid, signal.SIGKILL)
    return True
