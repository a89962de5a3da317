"""One run: worktree, runtime, pause/resume/kill, timeout, log batching and its state updates."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.runtime.config import WorkerSettings
from godel_server.worker.messages import TERMINAL_STATES, log_line, now, state_name
from godel_server.worker.outbox import RunOutbox
from godel_server.worker.pause import PauseState
from godel_server.worker.procs import PidFiles, signal_group
from godel_server.worker.runtimes import make_runtime, runtime_name
from godel_server.worker.runtimes.base import Outcome
from godel_server.worker.worktrees import Worktree, WorktreeError, Worktrees, git_identity

log = logging.getLogger(__name__)

LOG_FLUSH_SECONDS = 0.1
LOG_FLUSH_LINES = 200
STOP_GRACE_SECONDS = 2.0

Send = Callable[["Run", worker_service_pb2.ConnectRequest], None]


class Run:
    """Executes one RunAssignment and reports it through `send` (the worker routes to the owner)."""

    def __init__(
        self,
        assignment: worker_service_pb2.RunAssignment,
        settings: WorkerSettings,
        worktrees: Worktrees,
        pid_files: PidFiles,
        send: Send,
    ) -> None:
        self._assignment = assignment
        self._settings = settings
        self._worktrees = worktrees
        self._pid_files = pid_files
        self._send = send
        self.run_id = assignment.run_id
        self.agent_id = assignment.agent_id
        self.branch = assignment.branch or f"godel/{assignment.agent_id}"
        self.state: int = worker_service_pb2.RUN_STATE_STARTING
        self.pid = 0
        self.last_progress = now()
        self.commits: list[str] = []
        self.worktree: Worktree | None = None
        self.outbox = RunOutbox(self.run_id, self.agent_id)
        # Owner: the connection that assigned (or last adopted) the run and its replica id then.
        self.owner: Any = None
        self.owner_replica: str | None = None
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self._timeout_seconds = 0.0
        self.final_sent = False
        self._pause = PauseState(paused=assignment.start_paused)
        self._pgids: set[int] = set()
        self._lines: list[worker_service_pb2.RunLogLine] = []
        self._flusher: asyncio.Task[None] | None = None
        self._runtime_task: asyncio.Task[Outcome] | None = None
        self._runtime_started = False
        self._cancel_on_stop = False
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    # ----------------------------------------------------------------- RunContext (for runtimes)
    @property
    def assignment(self) -> worker_service_pb2.RunAssignment:
        return self._assignment

    @property
    def settings(self) -> WorkerSettings:
        return self._settings

    @property
    def worktree_path(self) -> Path:
        if self.worktree is None:
            raise RuntimeError("the run has no worktree yet")
        return self.worktree.path

    @property
    def pause(self) -> PauseState:
        return self._pause

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def child_env(self) -> dict[str, str]:
        # The worker's own GODEL_* settings hold secrets (API keys) and are none of the agent's business.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
        for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"):
            env.pop(key, None)
        env.update(self._assignment.config.env)
        env.update(
            {
                "GODEL_AGENT_ID": self.agent_id,
                "GODEL_RUN_ID": self.run_id,
                "GODEL_TASK": self._assignment.task,
                "GODEL_WORKTREE": str(self.worktree_path),
                "GODEL_SESSION_ID": self._assignment.session_id,
                "GODEL_MODEL": self._assignment.model,
            }
        )
        env.update(git_identity(self.agent_id))
        return env

    def started(self, pid: int) -> None:
        self.pid = pid
        self._runtime_started = True
        if self._pause.paused:
            for pgid in self._pgids:
                signal_group(pgid, signal.SIGSTOP)
            self.update(worker_service_pb2.RUN_STATE_PAUSED)
        else:
            self.update(worker_service_pb2.RUN_STATE_RUNNING)

    def add_process_group(self, pgid: int) -> None:
        self._pgids.add(pgid)
        self._pid_files.write(self.run_id, self._pgids)
        if self.stop_reason is not None:
            signal_group(pgid, signal.SIGKILL)
        elif self._pause.paused:
            signal_group(pgid, signal.SIGSTOP)

    def remove_process_group(self, pgid: int) -> None:
        self._pgids.discard(pgid)
        self._pid_files.write(self.run_id, self._pgids)

    def log(self, message: str, stream: str = "runtime", level: int = agent_pb2.LOG_LEVEL_INFO) -> None:
        self._lines.append(log_line(message, stream, level))
        self.last_progress = now()
        if len(self._lines) >= LOG_FLUSH_LINES:
            self.flush_logs()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    def usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.flush_logs()
        self.last_progress = now()
        self._send(
            self,
            worker_service_pb2.ConnectRequest(
                usage=worker_service_pb2.RunUsage(
                    run_id=self.run_id,
                    agent_id=self.agent_id,
                    model=model,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
            ),
        )

    def session_message(
        self, role: str, content: str, name: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        self.flush_logs()
        message = agent_pb2.SessionMessage(role=role, content=content, name=name, created_at=now())
        if metadata:
            struct = struct_pb2.Struct()
            struct.update(metadata)
            message.metadata.CopyFrom(struct)
        self._send(
            self,
            worker_service_pb2.ConnectRequest(
                session_message=worker_service_pb2.RunSessionMessage(
                    run_id=self.run_id, agent_id=self.agent_id, message=message
                )
            ),
        )

    async def report_commits(self) -> list[str]:
        await self._refresh_commits()
        if not self.finished:
            self.update(worker_service_pb2.RUN_STATE_PAUSED if self._pause.paused else self.state)
        return list(self.commits)

    # ----------------------------------------------------------------- reporting
    def status(self) -> worker_service_pb2.RunStatus:
        return worker_service_pb2.RunStatus(
            run_id=self.run_id,
            agent_id=self.agent_id,
            state=self.state,  # type: ignore[arg-type]
            pid=self.pid,
            last_progress=self.last_progress,
        )

    def update_message(
        self, state: int, error: str = "", result: str = "", exit_code: int | None = None
    ) -> worker_service_pb2.ConnectRequest:
        update = worker_service_pb2.RunUpdate(
            run_id=self.run_id,
            agent_id=self.agent_id,
            state=state,  # type: ignore[arg-type]
            commits=self.commits,
            error=error,
            result=result,
            time=now(),
        )
        if self.worktree is not None:
            update.worktree = str(self.worktree.path)
            update.branch = self.worktree.branch
        if exit_code is not None:
            update.exit_code = exit_code
        return worker_service_pb2.ConnectRequest(update=update)

    def update(self, state: int, error: str = "", result: str = "", exit_code: int | None = None) -> None:
        """Sets the state and sends a RunUpdate (after the log lines buffered so far)."""
        if self.final_sent:
            return
        self.flush_logs()
        self.state = state
        self.last_progress = now()
        if state in TERMINAL_STATES:
            self.final_sent = True
        log.info(
            "run state",
            extra={
                "run_id": self.run_id,
                "agent_id": self.agent_id,
                "state": state_name(state),
                "error": error,
            },
        )
        self._send(self, self.update_message(state, error, result, exit_code))

    def flush_logs(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        self._send(
            self,
            worker_service_pb2.ConnectRequest(
                logs=worker_service_pb2.RunLogs(run_id=self.run_id, agent_id=self.agent_id, lines=lines)
            ),
        )

    async def _flush_soon(self) -> None:
        await asyncio.sleep(LOG_FLUSH_SECONDS)
        self.flush_logs()

    async def _refresh_commits(self) -> None:
        if self.worktree is None:
            return
        try:
            self.commits = await self._worktrees.commits(self.worktree)
        except WorktreeError as exc:
            log.warning("cannot list commits", extra={"run_id": self.run_id, "error": str(exc)})

    # ----------------------------------------------------------------- controls
    def do_pause(self) -> str | None:
        """PAUSE; returns an error message or None."""
        if self.finished:
            return f"run already finished ({state_name(self.state)})"
        if self._pause.paused:
            return None
        self._pause.set_paused(True)
        for pgid in self._pgids:
            signal_group(pgid, signal.SIGSTOP)
        if self._runtime_started:
            self.update(worker_service_pb2.RUN_STATE_PAUSED)
        return None

    def do_resume(self) -> str | None:
        if self.finished:
            return f"run already finished ({state_name(self.state)})"
        if not self._pause.paused:
            return None
        self._pause.set_paused(False)
        for pgid in self._pgids:
            signal_group(pgid, signal.SIGCONT)
        if self._runtime_started:
            self.update(worker_service_pb2.RUN_STATE_RUNNING)
        return None

    def stop(self, reason: str, detail: str = "") -> str | None:
        """Kills the run's whole process tree; reason: "kill", "timeout" or "shutdown"."""
        if self.finished:
            return f"run already finished ({state_name(self.state)})"
        if self.stop_reason is None:
            self.stop_reason, self.stop_detail = reason, detail
        for pgid in list(self._pgids):
            signal_group(pgid, signal.SIGKILL)
        task = self._runtime_task
        if task is not None and not task.done():
            if self._cancel_on_stop:
                task.cancel()
            else:
                asyncio.get_running_loop().call_later(STOP_GRACE_SECONDS, task.cancel)
        return None

    # ----------------------------------------------------------------- execution
    def start(self) -> None:
        self.task = asyncio.create_task(self._execute(), name=f"run-{self.run_id}")

    async def _execute(self) -> None:
        outcome: Outcome | None = None
        error = ""
        timer: asyncio.Task[None] | None = None
        try:
            self.update(worker_service_pb2.RUN_STATE_STARTING)
            a = self._assignment
            self.worktree = await self._worktrees.create(a.repo, a.agent_id, self.branch, a.reuse_worktree)
            self.update(worker_service_pb2.RUN_STATE_WORKTREE_READY)
            if self.stop_reason is None:
                runtime = make_runtime(runtime_name(a.config.runtime))
                self._cancel_on_stop = runtime.cancel_on_stop
                timeout = (
                    a.config.timeout.ToTimedelta().total_seconds() if a.config.HasField("timeout") else 0.0
                )
                if timeout > 0:
                    timer = asyncio.create_task(self._timeout_after(timeout))
                self._runtime_task = asyncio.create_task(runtime.run(self))
                try:
                    outcome = await self._runtime_task
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
        except WorktreeError as exc:
            error = str(exc)
        except asyncio.CancelledError:
            self.stop_reason = self.stop_reason or "shutdown"
            raise
        except Exception as exc:
            log.exception("run failed", extra={"run_id": self.run_id})
            error = f"worker error: {exc!r}"
        finally:
            if timer is not None:
                timer.cancel()
            for pgid in list(self._pgids):
                signal_group(pgid, signal.SIGKILL)
            self._pgids.clear()
            self._pid_files.remove(self.run_id)
            await self._finish(outcome, error)

    async def _timeout_after(self, seconds: float) -> None:
        await self._pause.sleep_active(seconds)
        self._timeout_seconds = seconds
        self.log(f"timed out after {seconds:g}s; killing the run", level=agent_pb2.LOG_LEVEL_ERROR)
        self.stop("timeout")

    async def _finish(self, outcome: Outcome | None, error: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._refresh_commits())
        exit_code = outcome.exit_code if outcome else None
        result = outcome.result if outcome else ""
        reason = self.stop_reason
        if reason == "kill":
            state, error = worker_service_pb2.RUN_STATE_KILLED, self.stop_detail
        elif reason == "timeout":
            state, error = worker_service_pb2.RUN_STATE_FAILED, f"timed out after {self._timeout_seconds:g}s"
        elif reason == "shutdown":
            state, error = worker_service_pb2.RUN_STATE_FAILED, "worker shutting down"
        elif error:
            state = worker_service_pb2.RUN_STATE_FAILED
        elif outcome is not None and outcome.success:
            state = worker_service_pb2.RUN_STATE_SUCCEEDED
        else:
            state = worker_service_pb2.RUN_STATE_FAILED
            error = outcome.error if outcome else "the runtime ended without an outcome"
        self.update(state, error=error, result=result, exit_code=exit_code)
        self.done.set()
