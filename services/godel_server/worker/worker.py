"""The worker: connections to every replica, the runs it executes, and where their messages go.

Ownership: messages about a run go on the connection that assigned it (or that last sent ADOPT for
it), while that connection is live and still talks to the same replica (same replica_id). Otherwise
they wait in the run's outbox, flushed when that replica reconnects or another stream ADOPTs the run.

Delivery: a run's updates and usage stay in its outbox (and its journal in the state directory)
until the owner acknowledges them; a finished run leaves the worker's table once all of them are
acknowledged. A worker restarted on the same state directory comes back with the same identity
and the runs its previous process left unacknowledged: those that had not ended are reported
LOST (they died with that process), and all of them wait for an owner to ADOPT them.

Lease: a run whose owner has acknowledged no heartbeat for the owner's run lease is stopped and
reported LOST, so that when the owner declares it lost and runs it elsewhere, it no longer runs
here."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from godel.v1 import worker_service_pb2
from godel_server.runtime.config import WorkerSettings
from godel_server.worker.connection import Connection, cancelled
from godel_server.worker.messages import TERMINAL_STATES, now
from godel_server.worker.metrics import RUNS_STARTED
from godel_server.worker.outbox import Journal, RunOutbox
from godel_server.worker.procs import kill_leftovers
from godel_server.worker.reaper import Reaper
from godel_server.worker.run import Run
from godel_server.worker.runtimes import RUNTIMES, runtime_name
from godel_server.worker.sandbox import Sandboxes
from godel_server.worker.statedir import StateDir, claim
from godel_server.worker.worktrees import WorktreeError, Worktrees

log = logging.getLogger(__name__)

_ACTIONS = worker_service_pb2
# How often run leases and overdue acknowledgements are checked.
TICK_SECONDS = 0.25
# A message in flight this long without acknowledgement on a live stream is sent again.
RESEND_SECONDS = 10.0


class Worker:
    """Start with `await worker.start()` (raises SandboxError when agents cannot be sandboxed here,
    unless GODEL_SANDBOX=off), stop with `await worker.stop()` (kills what still runs and reports it
    LOST "worker shutting down")."""

    def __init__(self, settings: WorkerSettings, state: StateDir | None = None) -> None:
        self.state = state or claim(settings)
        self.worker_id = self.state.worker_id
        self.settings = settings
        self.worktrees = Worktrees(settings.worktree_root)
        self.sandboxes = Sandboxes(settings)
        self.journal = Journal(self.state.journal)
        self.runs: dict[str, Run] = {}
        # The run of each agent that has not finished yet (at most one: a new run waits for the old).
        self._unfinished: dict[str, Run] = {}
        self.connections = [
            Connection(addr, self, settings.api_key, tls=settings.tls) for addr in settings.connect
        ]
        self.accepting = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: Reaper | None = None

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self.sandboxes.check()
        kill_leftovers(self.settings.worktree_root)
        self._reaper = Reaper(self.settings.worktree_root)
        self._restore()
        log.info(
            "worker starting",
            extra={
                "worker_id": self.worker_id,
                "state_dir": str(self.state.path),
                "connect": list(self.settings.connect),
                "capacity": self.settings.capacity,
                "worktree_root": str(self.settings.worktree_root),
                "sandbox": self.settings.sandbox,
                "restored_runs": len(self.runs),
            },
        )
        for conn in self.connections:
            conn.start()
        self._background(self._tick_loop())

    def _restore(self) -> None:
        for run_id, requests in self.journal.load().items():
            updates = [r.update for r in requests if r.WhichOneof("message") == "update"]
            agent_id = next((u.agent_id for u in updates if u.agent_id), "") or requests[0].usage.agent_id
            outbox = RunOutbox.restore(run_id, agent_id, self.journal, requests)
            last = updates[-1].state if updates else worker_service_pb2.RUN_STATE_STARTING
            run = Run.restored(outbox, last, self.settings, self.worktrees, self.send_for_run, self.sandboxes)
            self.runs[run_id] = run
            log.warning(
                "a run of the previous worker process awaits acknowledgement",
                extra={"run_id": run_id, "agent_id": agent_id, "messages": len(outbox)},
            )

    async def stop(self, grace: float = 5.0) -> None:
        self.accepting = False
        active = [run for run in self.runs.values() if not run.finished]
        for run in active:
            run.stop("shutdown")
        if active:
            await asyncio.wait([asyncio.create_task(run.done.wait()) for run in active], timeout=grace)
        await self._await_acknowledgements(2.0)
        for conn in self.connections:
            await conn.stop()
        for task in list(self._tasks):
            task.cancel()
        for run in self.runs.values():
            if run.task is not None and not run.task.done():
                await cancelled(run.task, f"run {run.run_id}")
        self.journal.flush()
        self.state.release()
        if self._reaper is not None:
            self._reaper.stopped()
            self._reaper = None
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def _await_acknowledgements(self, timeout: float) -> None:
        """Gives the owners a moment to acknowledge what is in flight (the journal keeps the rest)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(run.outbox.unacknowledged for run in self.runs.values()) and loop.time() < deadline:
            if not any(conn.live for conn in self.connections):
                return
            await asyncio.sleep(0.02)

    def _background(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connected(self) -> bool:
        """Whether a replica can reach this worker (one of its streams is live)."""
        return self.accepting and any(conn.live for conn in self.connections)

    @property
    def active_runs(self) -> int:
        return len(self._unfinished)

    # ----------------------------------------------------------------- ConnectionOwner
    def hello(self) -> worker_service_pb2.WorkerHello:
        return worker_service_pb2.WorkerHello(
            worker_id=self.worker_id,
            runtimes=list(RUNTIMES),
            capacity=self.settings.capacity,
            runs=[run.status() for run in self.runs.values()],
            hostname=self.settings.hostname,
            labels={**self.settings.labels, "language": "python"},
        )

    def heartbeat(self) -> worker_service_pb2.WorkerHeartbeat:
        return worker_service_pb2.WorkerHeartbeat(
            runs=[run.status() for run in self.runs.values()],
            free_capacity=max(self.settings.capacity - self.active_runs, 0),
        )

    def on_welcome(self, conn: Connection) -> None:
        for run in list(self.runs.values()):
            if run.owner is conn and run.owner_replica == conn.replica_id:
                run.outbox.rewind()
                self._flush(run)

    def on_response(self, conn: Connection, response: worker_service_pb2.ConnectResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "assign":
            self._assign(conn, response.assign)
        elif kind == "control":
            self._control(conn, response.control)
        elif kind == "run_ack":
            self._acked(response.run_ack)
        else:
            log.warning("unexpected message from the replica", extra={"kind": kind, "address": conn.address})

    def requeue(self, run_id: str, items: list[tuple[int, worker_service_pb2.ConnectRequest]]) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        run.outbox.requeue(items)
        conn = run.owner
        if isinstance(conn, Connection) and self._reachable(run, conn):
            self._flush(run)

    def _acked(self, ack: worker_service_pb2.RunAck) -> None:
        run = self.runs.get(ack.run_id)
        if run is None or not run.outbox.ack(ack.seq):
            return
        self._flush(run)
        self._forget_if_done(run)

    def _forget_if_done(self, run: Run) -> None:
        if run.finished and not len(run.outbox) and self.runs.get(run.run_id) is run:
            del self.runs[run.run_id]
            run.outbox.forget()

    # ----------------------------------------------------------------- routing
    @staticmethod
    def _reachable(run: Run, conn: Connection) -> bool:
        return conn.live and conn.replica_id == run.owner_replica

    def send_for_run(self, run: Run, request: worker_service_pb2.ConnectRequest) -> None:
        ending = request.WhichOneof("message") == "update" and request.update.state in TERMINAL_STATES
        if ending and self._unfinished.get(run.agent_id) is run:
            del self._unfinished[run.agent_id]
        run.outbox.add(request)
        self._flush(run)

    def _flush(self, run: Run) -> None:
        conn = run.owner
        if not isinstance(conn, Connection) or not self._reachable(run, conn):
            return
        taken = run.outbox.take()
        for i, (order, request) in enumerate(taken):
            if not conn.send(request, run.run_id, order):
                run.outbox.requeue(taken[i:])
                return
        self._forget_if_done(run)

    def _take_ownership(self, run: Run, conn: Connection) -> None:
        run.owner, run.owner_replica = conn, conn.replica_id
        run.outbox.rewind()
        if not run.finished:
            # The new owner learns the current state first thing.
            run.outbox.add(run.update_message(run.state))
        self._flush(run)

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            for run in list(self.runs.values()):
                conn = run.owner
                if not isinstance(conn, Connection):
                    continue
                silence = conn.silence(run.owner_replica, now)
                if not run.finished and conn.run_lease > 0 and silence > conn.run_lease:
                    self._lease_lapsed(run, conn, silence)
                elif self._reachable(run, conn) and run.outbox.overdue(now, RESEND_SECONDS):
                    run.outbox.rewind()
                    self._flush(run)

    def _lease_lapsed(self, run: Run, conn: Connection, silence: float) -> None:
        how_long = f"for {silence:.0f}s" if silence != float("inf") else "since it restarted"
        detail = (
            f"the worker lost contact with agent-service replica {run.owner_replica} {how_long} "
            f"(its run lease is {conn.run_lease:g}s)"
        )
        if run.stop_reason is None:
            log.warning("run lease lapsed; stopping the run", extra={"run_id": run.run_id, "detail": detail})
        run.stop("lease", detail)

    # ----------------------------------------------------------------- assignments
    def _reject(
        self,
        conn: Connection,
        a: worker_service_pb2.RunAssignment,
        reason: worker_service_pb2.RejectReason.ValueType,
        error: str,
    ) -> None:
        log.info("run rejected", extra={"run_id": a.run_id, "agent_id": a.agent_id, "error": error})
        conn.send(
            worker_service_pb2.ConnectRequest(
                update=worker_service_pb2.RunUpdate(
                    run_id=a.run_id,
                    agent_id=a.agent_id,
                    state=worker_service_pb2.RUN_STATE_REJECTED,
                    reject_reason=reason,
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
            self._reject(
                conn, a, _ACTIONS.REJECT_REASON_INVALID, "the assignment needs a run_id and an agent_id"
            )
            return
        if not self.accepting:
            self._reject(conn, a, _ACTIONS.REJECT_REASON_SHUTTING_DOWN, "worker shutting down")
            return
        name = runtime_name(a.config.runtime)
        if name not in RUNTIMES:
            self._reject(
                conn,
                a,
                _ACTIONS.REJECT_REASON_RUNTIME,
                f"unknown runtime {name!r}; this worker hosts {', '.join(RUNTIMES)}",
            )
            return
        previous = self._unfinished.get(a.agent_id)
        if previous is not None:
            # The agent service gives an agent one run at a time: a new run of it (a restart whose
            # kill of the old run has not arrived or finished yet) supersedes the old one here.
            log.info(
                "run superseded", extra={"run_id": previous.run_id, "agent_id": a.agent_id, "by": a.run_id}
            )
            previous.stop("kill", f"superseded by run {a.run_id}")
            self._background(self._assign_after(previous, conn, a))
            return
        if self.active_runs >= self.settings.capacity:
            self._reject(
                conn,
                a,
                _ACTIONS.REJECT_REASON_CAPACITY,
                f"worker at capacity ({self.settings.capacity} runs)",
            )
            return
        run = Run(a, self.settings, self.worktrees, self.send_for_run, self.sandboxes, self.journal)
        run.owner, run.owner_replica = conn, conn.replica_id
        self.runs[a.run_id] = run
        self._unfinished[a.agent_id] = run
        log.info("run assigned", extra={"run_id": a.run_id, "agent_id": a.agent_id, "runtime": name})
        RUNS_STARTED.labels(name).inc()
        run.start()

    async def _assign_after(
        self, previous: Run, conn: Connection, a: worker_service_pb2.RunAssignment
    ) -> None:
        await previous.done.wait()
        self._assign(conn, a)

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
            self._background(self._cleanup(conn, c))
            return
        run = self.runs.get(c.run_id)
        if run is None:
            # Also the answer to an ADOPT by which the agent service asks whether the run is here.
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
        # A worktree is named after its agent (Worktrees.path_for), and an agent has one
        # unfinished run at most: no walk over every run (a thousand agents killed at once).
        run = self._unfinished.get(Path(c.worktree).name)
        if run is not None and run.worktree is not None and str(run.worktree.path) == c.worktree:
            self._ack(conn, c, f"run {run.run_id} still runs in {c.worktree}")
            return
        try:
            await self.worktrees.remove(c.repo, c.worktree)
        except WorktreeError as exc:
            self._ack(conn, c, str(exc))
            return
        log.info("worktree removed", extra={"worktree": c.worktree, "repo": c.repo})
        self._ack(conn, c, None)
