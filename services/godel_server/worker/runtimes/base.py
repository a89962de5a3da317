"""What a runtime is given (RunContext) and what it returns (Outcome)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.runtime.config import WorkerSettings, url_origin
from godel_server.worker.pause import PauseState

if TYPE_CHECKING:
    from godel_server.worker.safety import Guard, Violation


@dataclass(frozen=True)
class Outcome:
    """How a runtime ended by itself (kills and timeouts are decided by the run, not the runtime)."""

    success: bool
    result: str = ""
    error: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class WorkerKey:
    """A credential of the worker's own (GODEL_*), sent only to the origins listed for it."""

    value: str | None
    origins: tuple[str, ...]
    origins_setting: str  # the setting that lists them, for the message when it is withheld
    own_name: str  # the config.env name under which an agent brings its own


def pick_key(url: str, own: str | None, worker: WorkerKey) -> tuple[str | None, str]:
    """The agent's own credential if it brings one, else the worker's if `url` is on its origins;
    and, when the worker's is withheld, why (else "")."""
    if own:
        return own, ""
    if not worker.value:
        return None, ""
    origin = url_origin(url)
    if origin and origin in worker.origins:
        return worker.value, ""
    return None, (
        f"the worker's credential is not sent to {origin or url}: not on {worker.origins_setting}; "
        f"an agent brings its own for this endpoint as {worker.own_name} in config.env"
    )


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
        """Environment of every process the runtime starts (PATH, HOME, LANG + config.env + GODEL_*
        facts of the run + git identity; nothing else of the worker's)."""
        ...

    def process(
        self, argv: list[str], *, merge_stderr: bool = False, stdin: bool = False
    ) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
        """`async with ctx.process(argv) as proc`: argv runs in the run's sandbox, in the worktree, as
        a process group paused/resumed/killed with the run and watched against its limits; leaving
        the block kills what is left of the group."""
        ...

    def exit_code(self, returncode: int) -> int:
        """The exit code of the sandboxed command from its process's returncode (-N: signal N)."""
        ...

    def started(self, pid: int) -> None:
        """The runtime is running (pid: its main process group, 0 if none); sends RUNNING or PAUSED."""
        ...

    def log(self, message: str, stream: str = "runtime", level: int = agent_pb2.LOG_LEVEL_INFO) -> None: ...

    def usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None: ...

    def session_message(
        self, role: str, content: str, name: str = "", metadata: dict[str, Any] | None = None
    ) -> None: ...

    async def report_commits(self) -> list[str]:
        """Recomputes the branch's commits and sends RunUpdate{RUNNING, commits}; returns them."""
        ...

    @property
    def guard(self) -> Guard:
        """The agent's safety rules."""
        ...

    async def safety_block(self, violation: Violation) -> bool:
        """Reports a refusal (safety:block); True when the run may do the refused action after all
        (its rules pause it, and it was resumed), False when it must not (the run fails for it)."""
        ...

    async def check_changes(self) -> Violation | None:
        """What the run changed so far that breaks its safety rules, if anything."""
        ...


class Runtime(Protocol):
    # True: a kill cancels the runtime's task at once; False: the kill signal ends it by itself.
    cancel_on_stop: bool

    async def run(self, ctx: RunContext) -> Outcome: ...
