"""What a runtime is given (RunContext) and what it returns (Outcome)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.runtime.config import WorkerSettings
from godel_server.worker.pause import PauseState


@dataclass(frozen=True)
class Outcome:
    """How a runtime ended by itself (kills and timeouts are decided by the run, not the runtime)."""

    success: bool
    result: str = ""
    error: str = ""
    exit_code: int | None = None


class RunContext(Protocol):
    """The run a runtime executes: its assignment, worktree, environment and reporting hooks."""

    @property
    def assignment(self) -> worker_service_pb2.RunAssignment: ...

    @property
    def settings(self) -> WorkerSettings: ...

    @property
    def worktree_path(self) -> Path: ...

    @property
    def pause(self) -> PauseState: ...

    def child_env(self) -> dict[str, str]:
        """Environment of every process the runtime starts (os.environ + config.env + GODEL_* + git identity)."""
        ...

    def started(self, pid: int) -> None:
        """The runtime is running (pid: its main process group, 0 if none); sends RUNNING or PAUSED."""
        ...

    def add_process_group(self, pgid: int) -> None:
        """Registers a process group for pause/resume/kill (stopped at once if the run is paused)."""
        ...

    def remove_process_group(self, pgid: int) -> None: ...

    def log(self, message: str, stream: str = "runtime", level: int = agent_pb2.LOG_LEVEL_INFO) -> None: ...

    def usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None: ...

    def session_message(
        self, role: str, content: str, name: str = "", metadata: dict[str, Any] | None = None
    ) -> None: ...

    async def report_commits(self) -> list[str]:
        """Recomputes the branch's commits and sends RunUpdate{RUNNING, commits}; returns them."""
        ...


class Runtime(Protocol):
    # True: a kill cancels the runtime's task at once; False: the kill signal ends it by itself.
    cancel_on_stop: bool

    async def run(self, ctx: RunContext) -> Outcome: ...
