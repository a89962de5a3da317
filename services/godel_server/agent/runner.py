"""The run coordinator of one agent-service replica: it schedules the agents it owns onto
workers and turns what workers report into agent state.

- Ownership and failover: `leases.py` (a replica owns the agents whose run requests it consumed
  from the Kafka group `godel-agent-runners`, and takes over those of dead replicas).
- Scheduling (here): an owned agent that needs a run goes to the connected worker with the most
  free slots; each run is a new session.
- Worker reports (here): updates drive the agent state machine; failures are retried with
  exponential backoff up to `max_retries`; token usage is charged by `budget.py`.
- Supervision: `supervisor.py` (lost, stuck and adopted runs; desired state pushed to workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.budget import Budgets, Charge
from godel_server.agent.leases import ReplicaLeases
from godel_server.agent.lifecycle import can
from godel_server.agent.logstore import LogLine, LogStore
from godel_server.agent.mapping import config_from_dict
from godel_server.agent.models import AgentRow, SessionMessageRow, SessionRow
from godel_server.agent.pricing import PriceTable
from godel_server.agent.state import AgentStateStore
from godel_server.agent.supervisor import RunSupervisor
from godel_server.agent.workers import WorkerConnection, WorkerRegistry
from godel_server.runtime.config import Settings
from godel_server.runtime.errors import AgentNotFoundError
from godel_server.runtime.events import utcnow

log = logging.getLogger(__name__)

RUNS = Counter("godel_agent_runs_total", "Runs by outcome", ["outcome"])

LEVELS = {
    0: "INFO",
    1: "TRACE",
    2: "DEBUG",
    3: "INFO",
    4: "WARN",
    5: "ERROR",
    6: "FATAL",
}
MAX_BACKOFF = 60.0
FINAL_RUN_STATES = {wpb.RUN_STATE_SUCCEEDED, wpb.RUN_STATE_FAILED, wpb.RUN_STATE_KILLED}

AfterCommit = list[Callable[[], Any]]


def _schedulable(row: AgentRow) -> bool:
    if row.run_id is not None:
        return False
    if row.lifecycle_state == "initializing":
        return True
    return row.lifecycle_state == "failed" and row.next_attempt_at is not None


class _Skip(Exception):
    """The agent no longer needs what the caller was about to do."""


class RunCoordinator:
    def __init__(
        self,
        settings: Settings,
        store: AgentStateStore,
        logs: LogStore,
        registry: WorkerRegistry,
    ) -> None:
        self.replica_id = settings.instance_id
        self._settings = settings
        self._store = store
        self._db = store.db
        self._leases = ReplicaLeases(
            store.db, self.replica_id, settings.grpc_address, settings.agent_lease_seconds
        )
        self._logs = logs
        self.registry = registry
        self._budgets = Budgets(store, PriceTable.from_setting(settings.model_prices))
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._rejected: dict[str, set[str]] = {}
        self._supervisor = RunSupervisor(
            settings, store.db, registry, spawn=self._spawn, on_lost=self._run_lost
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # ---- lifecycle of the coordinator -------------------------------------------------------
    async def start(self) -> None:
        await self._leases.renew()
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name="agent-lease"),
            asyncio.create_task(self._schedule_loop(), name="agent-scheduler"),
            asyncio.create_task(self._supervisor.run(), name="agent-supervisor"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Hand the agents over at once instead of waiting for the lease to lapse.
        with contextlib.suppress(Exception):
            await self._leases.release()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def enqueue(self, agent_ids: list[str]) -> None:
        self._pending.update(agent_ids)
        self._wake.set()

    def nudge(self) -> None:
        """Worker capacity changed: retry pending agents now."""
        if self._pending:
            self._wake.set()

    # ---- leases and failover ----------------------------------------------------------------
    async def _lease_loop(self) -> None:
        interval = max(0.2, self._leases.lease_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._leases.renew()
                claimed = await self._leases.claim_orphans()
                if claimed:
                    log.warning(
                        "claimed agents of a dead replica",
                        extra={"count": len(claimed), "replica": self.replica_id},
                    )
                    await self._take_over(claimed)
            except Exception:
                log.exception("lease renewal or failover scan failed")

    async def _take_over(self, agent_ids: list[str]) -> None:
        async with self._db.reader() as session:
            rows = (await session.scalars(select(AgentRow).where(AgentRow.id.in_(agent_ids)))).all()
        for row in rows:
            if row.run_id is None:
                if row.lifecycle_state == "completing":
                    self._spawn(self._finish_completion(row.id))
                elif _schedulable(row):
                    self.enqueue([row.id])
            # Runs in flight are adopted (or declared lost) by the supervisor.

    async def claim(self, session: AsyncSession, agent_id: str) -> bool:
        """Takes ownership of an agent whose run was requested (inside the consumer's transaction)."""
        return await self._leases.claim(session, agent_id)

    # ---- scheduling -------------------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        last_scan = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            try:
                if time.monotonic() - last_scan > 5.0:
                    last_scan = time.monotonic()
                    await self._scan_owned()
                for agent_id in list(self._pending):
                    if not self.registry.has_room():
                        break  # nothing can be assigned until a worker reports free slots
                    if await self._assign(agent_id):
                        self._pending.discard(agent_id)
            except Exception:
                log.exception("scheduling pass failed")
                await asyncio.sleep(0.5)

    async def _scan_owned(self) -> None:
        now = utcnow()
        async with self._db.reader() as session:
            ids = (
                await session.scalars(
                    select(AgentRow.id).where(
                        AgentRow.owner == self.replica_id,
                        AgentRow.run_id.is_(None),
                        or_(
                            AgentRow.lifecycle_state == "initializing",
                            and_(AgentRow.lifecycle_state == "failed", AgentRow.next_attempt_at <= now),
                        ),
                    )
                )
            ).all()
        self._pending.update(ids)

    async def _assign(self, agent_id: str) -> bool:
        """Assigns a run to a worker; False when no worker has room (the agent stays pending)."""
        async with self._db.reader() as session:
            row = await session.get(AgentRow, agent_id)
        if row is None or row.owner != self.replica_id or not _schedulable(row):
            return True
        if row.next_attempt_at is not None and row.next_attempt_at > utcnow():
            return True  # its retry timer enqueues it again
        config = config_from_dict(row.config)
        runtime = config.runtime or "command"
        if runtime == "command" and not config.command:
            await self._refuse(
                agent_id,
                "nothing to run: give the agent a command (config.command) or use the openai runtime",
            )
            return True
        conn = self.registry.pick(runtime, frozenset(self._rejected.get(agent_id, ())))
        if conn is None:
            return False
        run_id = str(uuid.uuid4())

        async def change(session: AsyncSession, row: AgentRow) -> wpb.RunAssignment:
            if row.owner != self.replica_id or not _schedulable(row):
                raise _Skip
            now = utcnow()
            depth = 0
            if row.parent_session_id:
                parent = await session.get(SessionRow, row.parent_session_id)
                depth = parent.depth + 1 if parent else 1
            session.add(
                SessionRow(
                    id=run_id,
                    agent_id=row.id,
                    parent_id=row.parent_session_id,
                    depth=depth,
                    status="pending",
                    variables={},
                    meta={"workerId": conn.worker_id, "attempt": row.retry_count},
                    created_at=now,
                    updated_at=now,
                )
            )
            reuse = row.worktree_path is not None
            row.run_id = run_id
            row.session_id = run_id
            row.worker_id = conn.worker_id
            row.run_started_at = now
            row.next_attempt_at = None
            row.updated_at = now
            return wpb.RunAssignment(
                run_id=run_id,
                agent_id=row.id,
                session_id=run_id,
                task=row.task,
                model=row.model,
                config=config,
                repo=row.repo or "",
                branch=f"godel/{row.id}",
                reuse_worktree=reuse,
            )

        try:
            _, assignment = await self._store.update(agent_id, change)
        except (_Skip, AgentNotFoundError):
            return True
        conn.free -= 1
        self._supervisor.adopted.add(run_id)
        conn.send(wpb.ConnectResponse(assign=assignment))
        log.info("run assigned", extra={"agentId": agent_id, "runId": run_id, "workerId": conn.worker_id})
        return True

    async def _refuse(self, agent_id: str, reason: str) -> None:
        """Fails an agent that no run could help (a retry would fail the same way)."""

        async def change(session: AsyncSession, row: AgentRow) -> None:
            if row.owner != self.replica_id or not _schedulable(row):
                raise _Skip
            row.last_error = reason
            row.next_attempt_at = None
            row.completed_at = utcnow()
            if can("spawn_error", row.lifecycle_state):
                await self._store.apply(session, row, "spawn_error", reason=reason)

        with contextlib.suppress(_Skip, AgentNotFoundError):
            await self._store.update(agent_id, change)

    def _retry_later(self, agent_id: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.enqueue, [agent_id])

    # ---- worker messages --------------------------------------------------------------------
    async def on_update(self, conn: WorkerConnection, upd: wpb.RunUpdate) -> None:
        after: AfterCommit = []
        if upd.state in FINAL_RUN_STATES:
            # The worker sent the run's last lines before this update: store them first, so
            # whoever sees the agent finished also sees all of its logs.
            await self._logs.flush()

        async def change(session: AsyncSession, row: AgentRow) -> None:
            after.clear()
            if row.run_id != upd.run_id:
                if upd.state not in FINAL_RUN_STATES and upd.state != wpb.RUN_STATE_REJECTED:
                    # A run the agent no longer wants (killed, restarted): stop it.
                    after.append(
                        lambda: self._spawn(conn.control(upd.run_id, upd.agent_id, wpb.CONTROL_ACTION_KILL))
                    )
                return
            if upd.commits:
                row.commits = list(upd.commits)
            if upd.state == wpb.RUN_STATE_WORKTREE_READY:
                row.worktree_path = upd.worktree or row.worktree_path
                if can("worktree_created", row.lifecycle_state):
                    await self._store.apply(session, row, "worktree_created", actor=conn.worker_id)
            elif upd.state == wpb.RUN_STATE_RUNNING:
                await self._on_running(session, row, conn, after)
            elif upd.state == wpb.RUN_STATE_REJECTED:
                await self._on_rejected(session, row, conn, upd, after)
            elif upd.state in FINAL_RUN_STATES:
                await self._on_final(session, row, conn, upd, after)

        try:
            await self._store.update(upd.agent_id, change)
        except AgentNotFoundError:
            if upd.state not in FINAL_RUN_STATES:
                self._spawn(conn.control(upd.run_id, upd.agent_id, wpb.CONTROL_ACTION_KILL))
            return
        for action in after:
            action()

    async def _on_running(
        self, session: AsyncSession, row: AgentRow, conn: WorkerConnection, after: AfterCommit
    ) -> None:
        if row.lifecycle_state == "initializing":
            await self._store.apply(session, row, "worktree_created", actor=conn.worker_id)
        if row.lifecycle_state == "spawning":
            await self._store.apply(session, row, "session_started", actor=conn.worker_id)
        elif row.lifecycle_state == "failed" and row.next_attempt_at is None and can("retry", "failed"):
            await self._store.apply(
                session, row, "retry", actor=conn.worker_id, reason=f"attempt {row.retry_count + 1}"
            )
        sess = await session.get(SessionRow, row.run_id)
        if sess is not None and sess.status == "pending":
            sess.status = "active"
            sess.updated_at = utcnow()
        if row.lifecycle_state == "paused":
            run_id, agent_id = row.run_id or "", row.id
            after.append(lambda: self._spawn(conn.control(run_id, agent_id, wpb.CONTROL_ACTION_PAUSE)))

    async def _on_rejected(
        self,
        session: AsyncSession,
        row: AgentRow,
        conn: WorkerConnection,
        upd: wpb.RunUpdate,
        after: AfterCommit,
    ) -> None:
        rejected = self._rejected.setdefault(row.id, set())
        rejected.add(conn.worker_id)
        await self.close_session(session, row, "failed")
        row.run_id = None
        row.worker_id = None
        if len(rejected) >= 3 or len(rejected) >= len(self.registry.workers):
            row.last_error = f"no worker accepted the run: {upd.error}"
            row.completed_at = utcnow()
            if can("spawn_error", row.lifecycle_state):
                await self._store.apply(session, row, "spawn_error", reason=row.last_error)
            self._rejected.pop(row.id, None)
            return
        agent_id = row.id
        after.append(lambda: self._retry_later(agent_id, 0.2))

    async def _on_final(
        self,
        session: AsyncSession,
        row: AgentRow,
        conn: WorkerConnection,
        upd: wpb.RunUpdate,
        after: AfterCommit,
    ) -> None:
        now = utcnow()
        if row.run_started_at is not None:
            row.runtime_seconds += max(0, int((now - row.run_started_at).total_seconds()))
        if upd.result:
            row.result = upd.result
        succeeded = upd.state == wpb.RUN_STATE_SUCCEEDED and row.lifecycle_state in ("executing", "waiting")
        await self.close_session(session, row, "completed" if succeeded else "failed")
        row.run_id = None
        row.worker_id = None
        row.run_started_at = None
        self._rejected.pop(row.id, None)
        worktree, repo, keep = row.worktree_path, row.repo, self._keep_worktree(row)
        agent_id = row.id
        cleanup = (not keep) and bool(worktree)
        if succeeded:
            RUNS.labels("succeeded").inc()
            await self._store.apply(session, row, "task_complete", actor=conn.worker_id)
            after.append(lambda: self._spawn(self._finish_completion(agent_id)))
            return
        if row.lifecycle_state in ("killed", "failed"):
            # Already stopped through the API or a budget: nothing to retry.
            RUNS.labels("killed").inc()
            row.completed_at = row.completed_at or now
            if cleanup:
                after.append(lambda: self._spawn(self.cleanup(conn.worker_id, agent_id, worktree, repo)))
            return
        RUNS.labels("failed").inc()
        error = upd.error or (
            f"exited with code {upd.exit_code}" if upd.HasField("exit_code") else "run ended without success"
        )
        await self._fail(session, row, error, actor=conn.worker_id, after=after)
        if row.next_attempt_at is None and cleanup:
            after.append(lambda: self._spawn(self.cleanup(conn.worker_id, agent_id, worktree, repo)))

    async def _fail(
        self, session: AsyncSession, row: AgentRow, error: str, *, actor: str, after: AfterCommit
    ) -> None:
        """Marks the current attempt failed and schedules a retry if the policy allows one."""
        row.last_error = error
        trigger = "spawn_error" if row.lifecycle_state in ("initializing", "spawning") else "error"
        over_budget = row.budget_limit is not None and row.budget_consumed >= row.budget_limit
        retry = row.retry_count < row.max_retries and not over_budget
        if not retry:
            # Set before the transition: its agent:error event says whether a retry follows.
            row.next_attempt_at = None
            row.completed_at = utcnow()
        if can(trigger, row.lifecycle_state):
            await self._store.apply(session, row, trigger, reason=error, actor=actor)
        if retry and row.lifecycle_state == "failed":
            row.retry_count += 1
            delay = min(MAX_BACKOFF, self._settings.retry_backoff_seconds * 2 ** (row.retry_count - 1))
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            agent_id = row.id
            after.append(lambda: self._retry_later(agent_id, delay))
        elif retry:
            row.next_attempt_at = None
            row.completed_at = utcnow()

    def _keep_worktree(self, row: AgentRow) -> bool:
        return bool((row.config or {}).get("keep_worktree"))

    async def close_session(self, session: AsyncSession, row: AgentRow, status: str) -> None:
        if row.run_id is None:
            return
        sess = await session.get(SessionRow, row.run_id)
        if sess is not None and sess.completed_at is None:
            now = utcnow()
            sess.status = status
            sess.updated_at = now
            sess.completed_at = now

    async def cleanup(
        self, worker_id: str | None, agent_id: str, worktree: str | None, repo: str | None
    ) -> bool:
        """Removes an agent's worktree through a worker (the branch and its commits stay)."""
        if not worktree:
            return True
        conn = self.registry.get(worker_id) or self.registry.any()
        if conn is None:
            log.warning("no worker to remove a worktree", extra={"agentId": agent_id, "worktree": worktree})
            return True
        ack = await conn.control(
            # The ack echoes run_id: the agent id keeps concurrent cleanups apart.
            agent_id,
            agent_id,
            wpb.CONTROL_ACTION_CLEANUP,
            worktree=worktree,
            repo=repo or "",
            timeout=120.0,
        )
        if not ack.ok:
            log.warning("worktree cleanup failed", extra={"agentId": agent_id, "error": ack.error})
        return ack.ok

    async def _finish_completion(self, agent_id: str) -> None:
        async with self._db.reader() as session:
            row = await session.get(AgentRow, agent_id)
        if row is None or row.lifecycle_state != "completing":
            return
        ok = True
        if not self._keep_worktree(row):
            ok = await self.cleanup(None, agent_id, row.worktree_path, row.repo)

        async def change(session: AsyncSession, row: AgentRow) -> None:
            if row.lifecycle_state != "completing":
                return
            row.completed_at = utcnow()
            if ok:
                await self._store.apply(
                    session, row, "cleanup_done", extra={"commits": list(row.commits or [])}
                )
            else:
                row.last_error = "removing the worktree failed"
                await self._store.apply(session, row, "cleanup_error", reason=row.last_error)

        with contextlib.suppress(AgentNotFoundError):
            await self._store.update(agent_id, change)

    async def on_logs(self, msg: wpb.RunLogs) -> None:
        lines = [
            LogLine(
                time=line.time.ToDatetime(tzinfo=UTC) if line.HasField("time") else utcnow(),
                level=LEVELS.get(line.level, "INFO"),
                stream=line.stream or "stdout",
                message=line.message,
            )
            for line in msg.lines
        ]
        self._logs.append(msg.agent_id, msg.run_id or None, lines)

    async def on_session_message(self, msg: wpb.RunSessionMessage) -> None:
        m = msg.message
        async with self._db.session() as session:
            session.add(
                SessionMessageRow(
                    session_id=msg.run_id,
                    role=m.role or "assistant",
                    content=m.content,
                    name=m.name or None,
                    meta={},
                    created_at=utcnow(),
                )
            )

    async def on_usage(self, conn: WorkerConnection, usage: wpb.RunUsage) -> None:
        async def change(session: AsyncSession, row: AgentRow) -> tuple[Charge, str | None]:
            return await self._budgets.charge(session, row, usage), row.run_id

        try:
            _, (charge, run_id) = await self._store.update(usage.agent_id, change)
        except AgentNotFoundError:
            return
        charge.record()
        if charge.exceeded and run_id:
            self._spawn(conn.control(run_id, usage.agent_id, wpb.CONTROL_ACTION_KILL, reason=charge.exceeded))

    async def on_worker_gone(self, conn: WorkerConnection) -> None:
        log.warning("worker disconnected", extra={"workerId": conn.worker_id})
        self._wake.set()

    # ---- supervision ------------------------------------------------------------------------
    async def _run_lost(
        self, agent_id: str, run_id: str, error: str, conn: WorkerConnection | None = None
    ) -> None:
        log.warning("run lost", extra={"agentId": agent_id, "runId": run_id, "error": error})
        if conn is not None:
            self._spawn(conn.control(run_id, agent_id, wpb.CONTROL_ACTION_KILL, reason=error))
        after: AfterCommit = []

        async def change(session: AsyncSession, row: AgentRow) -> None:
            after.clear()
            if row.run_id != run_id:
                return
            await self.close_session(session, row, "failed")
            row.run_id = None
            row.worker_id = None
            row.run_started_at = None
            if row.lifecycle_state in ("killed", "failed"):
                return
            await self._fail(session, row, error, actor="system", after=after)

        with contextlib.suppress(AgentNotFoundError):
            await self._store.update(agent_id, change)
        for action in after:
            action()
