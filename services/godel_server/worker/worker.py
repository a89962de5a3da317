"""The worker: connections to every replica, the runs it executes, and where their messages go.

Ownership: messages about a run go on the connection that assigned it (or that last sent ADOPT for
it), while that connection is live and still talks to the same replica (same replica_id). Otherwise
they wait in the run's outbox, flushed when that replica reconnects or another stream ADOPTs the run.
A finished run leaves the worker's table once its final RunUpdate has been written to a stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from godel.v1 import worker_service_pb2
from godel_server.runtime.config import WorkerSettings
from godel_server.worker.connection import Connection
from godel_server.worker.messages import is_final_update, now
from godel_server.worker.procs import PidFiles
from godel_server.worker.run import Run
from godel_server.worker.runtimes import RUNTIMES, runtime_name
from godel_server.worker.worktrees import WorktreeError, Worktrees

log = logging.getLogger(__name__)

_ACTIONS = worker_service_pb2


class Worker:
    """Start with `await worker.start()`, stop with `await worker.stop()` (kills what still runs and
    reports it FAILED "worker shutting down")."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.worktrees = Worktrees(settings.worktree_root)
        self.pid_files = PidFiles(settings.worktree_root)
        self.runs: dict[str, Run] = {}
        self.connections = [Connection(addr, self, settings.api_key) for addr in settings.connect]
        self.accepting = True
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.pid_files.kill_leftovers()
        log.info(
            "worker starting",
            extra={
                "worker_id": self.settings.worker_id,
                "connect": list(self.settings.connect),
                "capacity": self.settings.capacity,
                "worktree_root": str(self.settings.worktree_root),
            },
        )
        for conn in self.connections:
            conn.start()

    async def stop(self, grace: float = 5.0) -> None:
        self.accepting = False
        active = [run for run in self.runs.values() if not run.finished]
        for run in active:
            run.stop("shutdown")
        if active:
            await asyncio.wait([asyncio.create_task(run.done.wait()) for run in active], timeout=grace)
        await asyncio.gather(*(conn.drain(2.0) for conn in self.connections))
        for conn in self.connections:
            await conn.stop()
        for task in list(self._tasks):
            task.cancel()
        for run in self.runs.values():
            if run.task is not None and not run.task.done():
                run.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run.task
        log.info("worker stopped", extra={"worker_id": self.settings.worker_id})

    @property
    def active_runs(self) -> int:
        return sum(1 for run in self.runs.values() if not run.finished)

    # ----------------------------------------------------------------- ConnectionOwner
    def hello(self) -> worker_service_pb2.WorkerHello:
        return worker_service_pb2.WorkerHello(
            worker_id=self.settings.worker_id,
            runtimes=list(RUNTIMES),
            capacity=self.settings.capacity,
            runs=[run.status() for run in self.runs.values()],
            hostname=self.settings.hostname,
        )

    def heartbeat(self) -> worker_service_pb2.WorkerHeartbeat:
        return worker_service_pb2.WorkerHeartbeat(
            runs=[run.status() for run in self.runs.values()],
            free_capacity=max(self.settings.capacity - self.active_runs, 0),
        )

    def on_welcome(self, conn: Connection) -> None:
        for run in list(self.runs.values()):
            if run.owner is conn and run.owner_replica == conn.replica_id:
                self._flush(run)

    def on_response(self, conn: Connection, response: worker_service_pb2.ConnectResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "assign":
            self._assign(conn, response.assign)
        elif kind == "control":
            self._control(conn, response.control)
        else:
            log.warning("unexpected message from the replica", extra={"kind": kind, "address": conn.address})

    def requeue(self, run_id: str, requests: list[worker_service_pb2.ConnectRequest]) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        run.outbox.prepend(requests)
        conn = run.owner
        if isinstance(conn, Connection) and self._reachable(run, conn):
            self._flush(run)

    def delivered(self, run_id: str, request: worker_service_pb2.ConnectRequest) -> None:
        if is_final_update(request):
            run = self.runs.get(run_id)
            if run is not None and run.finished and not len(run.outbox):
                del self.runs[run_id]

    # ----------------------------------------------------------------- routing
    @staticmethod
    def _reachable(run: Run, conn: Connection) -> bool:
        return conn.live and conn.replica_id == run.owner_replica

    def send_for_run(self, run: Run, request: worker_service_pb2.ConnectRequest) -> None:
        conn = run.owner
        if isinstance(conn, Connection) and self._reachable(run, conn):
            if len(run.outbox):
                self._flush(run)
            conn.send(request, run.run_id)
        else:
            run.outbox.add(request)

    def _flush(self, run: Run) -> None:
        conn = run.owner
        if not isinstance(conn, Connection):
            return
        for request in run.outbox.drain():
            if not conn.send(request, run.run_id):
                run.outbox.add(request)

    def _take_ownership(self, run: Run, conn: Connection) -> None:
        run.owner, run.owner_replica = conn, conn.replica_id
        self._flush(run)
        if not run.finished:
            conn.send(run.update_message(run.state), run.run_id)

    # ----------------------------------------------------------------- assignments
    def _reject(self, conn: Connection, a: worker_service_pb2.RunAssignment, error: str) -> None:
        log.info("run rejected", extra={"run_id": a.run_id, "agent_id": a.agent_id, "error": error})
        conn.send(
            worker_service_pb2.ConnectRequest(
                update=worker_service_pb2.RunUpdate(
                    run_id=a.run_id,
                    agent_id=a.agent_id,
                    state=worker_service_pb2.RUN_STATE_REJECTED,
                    error=error,
                    time=now(),
                )
            )
        )

    def _assign(self, conn: Connection, a: worker_service_pb2.RunAssignment) -> None:
        existing = self.runs.get(a.run_id)
        if existing is not None:
            # The replica assigned a run we already execute (e.g. it restarted): it owns it now.
            self._take_ownership(existing, conn)
            return
        if not a.run_id or not a.agent_id:
            self._reject(conn, a, "the assignment needs a run_id and an agent_id")
            return
        if not self.accepting:
            self._reject(conn, a, "worker shutting down")
            return
        name = runtime_name(a.config.runtime)
        if name not in RUNTIMES:
            self._reject(conn, a, f"unknown runtime {name!r}; this worker hosts {', '.join(RUNTIMES)}")
            return
        if self.active_runs >= self.settings.capacity:
            self._reject(conn, a, f"worker at capacity ({self.settings.capacity} runs)")
            return
        for run in self.runs.values():
            if run.agent_id == a.agent_id and not run.finished:
                self._reject(conn, a, f"agent {a.agent_id} already has run {run.run_id} on this worker")
                return
        run = Run(a, self.settings, self.worktrees, self.pid_files, self.send_for_run)
        run.owner, run.owner_replica = conn, conn.replica_id
        self.runs[a.run_id] = run
        log.info("run assigned", extra={"run_id": a.run_id, "agent_id": a.agent_id, "runtime": name})
        run.start()

    # ----------------------------------------------------------------- controls
    def _ack(self, conn: Connection, c: worker_service_pb2.RunControl, error: str | None) -> None:
        conn.send(
            worker_service_pb2.ConnectRequest(
                ack=worker_service_pb2.ControlAck(
                    run_id=c.run_id, action=c.action, ok=error is None, error=error or ""
                )
            )
        )

    def _control(self, conn: Connection, c: worker_service_pb2.RunControl) -> None:
        if c.action == _ACTIONS.CONTROL_ACTION_CLEANUP:
            task = asyncio.create_task(self._cleanup(conn, c))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        run = self.runs.get(c.run_id)
        if run is None:
            self._ack(conn, c, "unknown run")
            return
        error: str | None
        if c.action == _ACTIONS.CONTROL_ACTION_PAUSE:
            error = run.do_pause()
        elif c.action == _ACTIONS.CONTROL_ACTION_RESUME:
            error = run.do_resume()
        elif c.action == _ACTIONS.CONTROL_ACTION_KILL:
            error = run.stop("kill", c.reason)
        elif c.action == _ACTIONS.CONTROL_ACTION_ADOPT:
            self._ack(conn, c, None)
            self._take_ownership(run, conn)
            return
        else:
            error = f"unknown control action {c.action}"
        self._ack(conn, c, error)

    async def _cleanup(self, conn: Connection, c: worker_service_pb2.RunControl) -> None:
        for run in self.runs.values():
            if not run.finished and run.worktree is not None and str(run.worktree.path) == c.worktree:
                self._ack(conn, c, f"run {run.run_id} still runs in {c.worktree}")
                return
        try:
            await self.worktrees.remove(c.repo, c.worktree)
        except WorktreeError as exc:
            self._ack(conn, c, str(exc))
            return
        log.info("worktree removed", extra={"worktree": c.worktree, "repo": c.repo})
        self._ack(conn, c, None)
