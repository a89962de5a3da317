"""Helpers for worker and agent tests: git repositories made on the spot (and `git` in them), worker
settings in a temp dir, a worker connected to a fake replica, and /proc probes of process state."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import duration_pb2

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.runtime.config import WorkerSettings, load_worker_settings
from godel_server.worker import Worker
from tests.fakes.worker_controller import FakeController

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(key, None)
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_git_repo(path: Path) -> Path:
    """A repository with one commit on branch main."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("test repo\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    return path


def worker_settings(tmp_path: Path, *addresses: str, **env: str) -> WorkerSettings:
    base = {
        "GODEL_HOME": str(tmp_path / "home"),
        "GODEL_WORKER_CONNECT": ",".join(addresses),
        "GODEL_WORKER_ID": "worker-test",
        "GODEL_WORKTREE_ROOT": str(tmp_path / "worktrees"),
    }
    return load_worker_settings({**base, **env})


@dataclass
class RunningWorker:
    ctl: FakeController
    worker: Worker
    repo: Path
    settings: WorkerSettings


@contextlib.asynccontextmanager
async def running_worker(
    tmp_path: Path, ctl: FakeController | None = None, /, **env: str
) -> AsyncIterator[RunningWorker]:
    """An in-process worker (settings from worker_settings + `env`) connected to a FakeController
    (`ctl`, not started yet, or a default one), with a git repository at <tmp_path>/repo; both
    stopped on exit."""
    ctl = await (ctl or FakeController()).start()
    try:
        repo = make_git_repo(tmp_path / "repo")
        worker = Worker(worker_settings(tmp_path, ctl.address, **env))
        await worker.start()
        try:
            await ctl.wait_stream()
            yield RunningWorker(ctl, worker, repo, worker.settings)
        finally:
            await worker.stop()
    finally:
        await ctl.stop()


def assignment(
    repo: Path,
    run_id: str,
    agent_id: str,
    command: list[str] | None = None,
    *,
    runtime: str = "",
    timeout: float = 0.0,
    task: str = "the task",
    model: str = "test-model",
    **fields: object,
) -> worker_service_pb2.RunAssignment:
    config = agent_pb2.AgentConfig(runtime=runtime, command=command or [])
    if timeout:
        config.timeout.CopyFrom(duration_pb2.Duration(nanos=int(timeout * 1e9) % 10**9, seconds=int(timeout)))
    return worker_service_pb2.RunAssignment(
        run_id=run_id,
        agent_id=agent_id,
        session_id=f"session-{run_id}",
        task=task,
        model=model,
        config=config,
        repo=str(repo),
        branch=f"godel/{agent_id}",
        **fields,  # type: ignore[arg-type]
    )


def _stat_after_name(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, parent, ...), None when the
    process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T, Z, ...), None when the process is gone."""
    fields = _stat_after_name(pid)
    return fields[0] if fields else None


def parent_pid(pid: int) -> int | None:
    """The parent of a process, None when it is gone."""
    fields = _stat_after_name(pid)
    return int(fields[1]) if fields else None


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def exists(path: str | Path) -> bool:
    return Path(path).exists()
