"""One run: worktree, sandbox, runtime, pause/resume/kill, timeout and limits, log batching and its
state updates; also what is left of a run a previous worker process held (`Run.restored`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.runtime import tracing
from godel_server.runtime.config import WorkerSettings
from godel_server.runtime.secrets import Scrubber
from godel_server.worker.flag import Flag
from godel_server.worker.limits import watch
from godel_server.worker.messages import TERMINAL_STATES, log_line, now, state_name
from godel_server.worker.outbox import Journal, RunOutbox
from godel_server.worker.pause import PauseState
from godel_server.worker.procs import signal_group, spawn_group
from godel_server.worker.runtimes import make_runtime, runtime_name
from godel_server.worker.runtimes.base import Outcome
from godel_server.worker.safety import Guard, Violation
from godel_server.worker.sandbox import GitDirs, Sandbox, Sandboxes, SandboxRefused
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
        send: Send,
        sandboxes: Sandboxes,
        journal: Journal | None = None,
    ) -> None:
        self._assignment = assignment
        self._settings = settings
        self._worktrees = worktrees
        self._sandboxes = sandboxes
        self.sandbox: Sandbox | None = None
        self._send = send
        self.run_id = assignment.run_id
        self.agent_id = assignment.agent_id
        self.branch = assignment.branch or f"godel/{assignment.agent_id}"
        self.state: int = worker_service_pb2.RUN_STATE_STARTING
        self.pid = 0
        self.last_progress = now()
        self.commits: list[str] = []
        self.worktree: Worktree | None = None
        self.outbox = RunOutbox(self.run_id, self.agent_id, journal)
        # Owner: the connection that assigned (or last adopted) the run and its replica id then.
        self.owner: Any = None
        self.owner_replica: str | None = None
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self._timeout_seconds = 0.0
        self.final_sent = False
        self._pause = PauseState(paused=assignment.start_paused)
        self._guard = Guard(assignment.safety)
        self._scrub = Scrubber(assignment.config.env)
        self._approved: set[str] = set()  # what resuming a run held by a safety rule allowed
        self._stopped = Flag()
        self._pgids: set[int] = set()
        self._lines: list[worker_service_pb2.RunLogLine] = []
        self._flusher: asyncio.Task[None] | None = None
        self._runtime_task: asyncio.Task[Outcome] | None = None
        self._runtime_started = False
        self._cancel_on_stop = False
        self.task: asyncio.Task[None] | None = None
        self.done = Flag()

    @classmethod
    def restored(
        cls,
        outbox: RunOutbox,
        last_state: int,
        settings: WorkerSettings,
        worktrees: Worktrees,
        send: Send,
        sandboxes: Sandboxes,
    ) -> Run:
        """A run of a previous process of this worker with messages its owner never acknowledged:
        it ended with that process, so unless it had ended before, it ends now as LOST."""
        assignment = worker_service_pb2.RunAssignment(run_id=outbox.run_id, agent_id=outbox.agent_id)
        run = cls(assignment, settings, worktrees, send, sandboxes)
        run.outbox = outbox
        run.state = last_state
        run.final_sent = last_state in TERMINAL_STATES
        run.done.set()
        run.update(
            worker_service_pb2.RUN_STATE_LOST,
            error="the worker restarted; the run ended with its previous process",
        )
        return run

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
    def guard(self) -> Guard:
        return self._guard

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def _require_sandbox(self) -> Sandbox:
        if self.sandbox is None:
            raise RuntimeError("the run has no sandbox yet")
        return self.sandbox

    def child_env(self) -> dict[str, str]:
        # Only what the run grants: nothing of the worker's environment (its GODEL_* settings hold
        # API keys) beyond, with the sandbox off, its PATH and HOME.
        env = self._require_sandbox().base_env()
        env["GIT_TERMINAL_PROMPT"] = "0"
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

    @contextlib.asynccontextmanager
    async def process(
        self, argv: list[str], *, merge_stderr: bool = False, stdin: bool = False
    ) -> AsyncIterator[asyncio.subprocess.Process]:
        """Starts argv in the run's sandbox, in the worktree, as a process group of the run (paused,
        resumed and killed with it) watched against the run's limits; on leaving, kills what is
        left of the group."""
        sandbox = self._require_sandbox()
        argv, env = sandbox.command(argv, self.child_env(), self.worktree_path)
        proc = await spawn_group(
            argv,
            self.worktree_path,
            env,
            root=self._settings.worktree_root,
            merge_stderr=merge_stderr,
            stdin=stdin,
        )
        pgid = proc.pid
        self.add_process_group(pgid)
        limits = sandbox.policy.limits
        watcher = (
            asyncio.create_task(watch(pgid, limits, sandbox.overhead, self._over_limit))
            if limits.any
            else None
        )
        try:
            yield proc
        finally:
            if watcher is not None:
                watcher.cancel()
            signal_group(pgid, signal.SIGKILL)
            self.remove_process_group(pgid)

    def exit_code(self, returncode: int) -> int:
        return self._require_sandbox().exit_code(returncode)

    def _over_limit(self, reason: str) -> None:
        self.log(f"sandbox: {reason}; stopping the run", level=agent_pb2.LOG_LEVEL_ERROR)
        self.stop("limit", reason)

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
        if self.stop_reason is not None:
            signal_group(pgid, signal.SIGKILL)
        elif self._pause.paused:
            signal_group(pgid, signal.SIGSTOP)

    def remove_process_group(self, pgid: int) -> None:
        self._pgids.discard(pgid)

    def log(self, message: str, stream: str = "runtime", level: int = agent_pb2.LOG_LEVEL_INFO) -> None:
        self._lines.append(log_line(self._scrub(message), stream, level))
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
        message = agent_pb2.SessionMessage(
            role=role, content=self._scrub(content), name=name, created_at=now()
        )
        if metadata:
            struct = struct_pb2.Struct()
            struct.update(self._scrub.data(metadata))
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

    async def safety_block(self, violation: Violation) -> bool:
        if violation.approval in self._approved:
            return True
        self._report_block(violation, self._guard.action)
        if not self._guard.pauses:
            return False
        self.do_pause()
        resumed = asyncio.create_task(self._pause.wait_running())
        stopped = asyncio.create_task(self._stopped.wait())
        try:
            await asyncio.wait({resumed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            resumed.cancel()
            stopped.cancel()
        if self.stop_reason is not None:
            return False
        self._approved.add(violation.approval)
        return True

    def _report_block(self, violation: Violation, action: int) -> None:
        """Logs the refusal and sends SafetyBlock (the service publishes safety:block)."""
        held = action == agent_pb2.SAFETY_ACTION_PAUSE
        note = "; the run is paused: resume the agent to allow it, kill it to refuse" if held else ""
        self.log(violation.error + note, level=agent_pb2.LOG_LEVEL_ERROR)
        self.flush_logs()
        block = worker_service_pb2.SafetyBlock(
            run_id=self.run_id,
            agent_id=self.agent_id,
            rule=violation.rule,
            detail=self._scrub(violation.detail),
            action=action,  # type: ignore[arg-type]
        )
        self._send(self, worker_service_pb2.ConnectRequest(safety_block=block))

    async def check_changes(self) -> Violation | None:
        if self.worktree is None:
            return None
        return await self._guard.changes(self.worktree.path, self.worktree.base)

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
            error=self._scrub(error),
            result=self._scrub(result),
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
        """Kills the run's whole process tree; reason: "kill", "timeout", "limit" (detail: which),
        "shutdown" or "lease" (detail: the owner the worker lost contact with)."""
        if self.finished:
            return f"run already finished ({state_name(self.state)})"
        if self.stop_reason is None:
            self.stop_reason, self.stop_detail = reason, detail
        self._stopped.set()
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
        self.task = asyncio.create_task(self._traced_execute(), name=f"run-{self.run_id}")

    async def _traced_execute(self) -> None:
        """The run, as a span of the trace its assignment carries (runtime/tracing.py)."""
        a = self._assignment
        with tracing.span(
            "agent run",
            parent={"traceparent": a.traceparent} if a.traceparent else None,
            kind=tracing.SpanKind.CONSUMER,
            attributes={
                "godel.agent.id": a.agent_id,
                "godel.run.id": a.run_id,
                "godel.runtime": runtime_name(a.config.runtime),
            },
        ) as span:
            await self._execute()
            if span is not None:
                span.set_attribute("godel.run.state", state_name(self.state))

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
                self.sandbox = await self._make_sandbox(self.worktree)
                runtime = make_runtime(runtime_name(a.config.runtime))
                self._cancel_on_stop = runtime.cancel_on_stop
                timeout = self.sandbox.policy.wall_seconds
                if timeout > 0:
                    timer = asyncio.create_task(self._timeout_after(timeout))
                self._runtime_task = asyncio.create_task(runtime.run(self))
                try:
                    outcome = await self._runtime_task
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                outcome = await self._check_outcome(outcome)
        except WorktreeError as exc:
            error = str(exc)
        except SandboxRefused as exc:
            field, _, problem = str(exc).partition(": ")  # it names the refused field first
            violation = Violation(field, problem)
            error = violation.error
            self._report_block(violation, agent_pb2.SAFETY_ACTION_FAIL)  # no sandbox, nothing to hold
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
            await self._finish(outcome, error)

    async def _check_outcome(self, outcome: Outcome | None) -> Outcome | None:
        """A run that succeeded completes only if what it changed keeps its safety rules."""
        if outcome is None or not outcome.success or self.stop_reason is not None:
            return outcome
        violation = await self.check_changes()
        if violation is None or await self.safety_block(violation):
            return outcome
        return Outcome(False, result=outcome.result, error=violation.error, exit_code=outcome.exit_code)

    async def _make_sandbox(self, worktree: Worktree) -> Sandbox:
        git = GitDirs(worktree.common, worktree.admin, worktree.branch)
        sandbox = await asyncio.to_thread(
            self._sandboxes.for_run, self.run_id, self._assignment.config, worktree.path, git
        )
        if sandbox.bwrap is None:
            self.log(
                "sandbox: OFF on this worker (GODEL_SANDBOX=off): this agent runs with the worker's rights",
                level=agent_pb2.LOG_LEVEL_WARN,
            )
        for note in sandbox.policy.notes:
            self.log(note, level=agent_pb2.LOG_LEVEL_WARN)
        return sandbox

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
        elif reason == "limit":
            state, error = worker_service_pb2.RUN_STATE_FAILED, f"sandbox: {self.stop_detail}"
        elif reason == "shutdown":
            state, error = worker_service_pb2.RUN_STATE_LOST, "worker shutting down"
        elif reason == "lease":
            state, error = worker_service_pb2.RUN_STATE_LOST, self.stop_detail
        elif error:
            state = worker_service_pb2.RUN_STATE_FAILED
        elif outcome is not None and outcome.success:
            state = worker_service_pb2.RUN_STATE_SUCCEEDED
        else:
            state = worker_service_pb2.RUN_STATE_FAILED
            error = outcome.error if outcome else "the runtime ended without an outcome"
        self.update(state, error=error, result=result, exit_code=exit_code)
        self.done.set()
