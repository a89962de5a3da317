"""The run coordinator of one agent-service replica.

- Ownership: a replica owns the agents whose run requests it consumed (Kafka group
  `godel-agent-runners`) and renews a lease in `agent_replicas`. When a replica's lease lapses,
  the others claim its agents: a run its worker still executes is adopted, a lost one restarted.
- Scheduling: an owned agent that needs a run is assigned to the connected worker with the most
  free slots; each run is a new session.
- Supervision: worker updates drive the agent state machine; runs that vanish with their worker,
  stop being reported (stuck) or stop making progress fail and are retried with exponential backoff
  up to `max_retries`; the desired state in the database (paused, killed) is reconciled with what
  the worker reports.
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
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.lifecycle import LIVE, can
from godel_server.agent.logstore import LogLine, LogStore
from godel_server.agent.mapping import config_from_dict
from godel_server.agent.models import AgentRow, ReplicaRow, SessionMessageRow, SessionRow
from godel_server.agent.pricing import PriceTable
from godel_server.agent.state import AgentStateStore
from godel_server.agent.workers import ALIVE_RUN_STATES, WorkerConnection, WorkerRegistry
from godel_server.runtime.config import Settings
from godel_server.runtime.errors import AgentNotFoundError
from godel_server.runtime.events import utcnow

log = logging.getLogger(__name__)

COST = Counter("godel_agent_cost_dollars", "Spend of agents in USD, from token usage", ["model"])
TOKENS = Counter("godel_agent_tokens_total", "Tokens used by agents", ["model", "kind"])
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
SUPERVISE_SECONDS = 1.0
UNOWNED_GRACE = timedelta(seconds=30)
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
        self._address = settings.grpc_address
        self._settings = settings
        self._store = store
        self._db = store.db
        self._logs = logs
        self.registry = registry
        self._prices = PriceTable.from_setting(settings.model_prices)
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._rejected: dict[str, set[str]] = {}
        self._adopted: set[str] = set()
        self._missing: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # ---- lifecycle of the coordinator -------------------------------------------------------
    async def start(self) -> None:
        await self._renew_lease()
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name="agent-lease"),
            asyncio.create_task(self._schedule_loop(), name="agent-scheduler"),
            asyncio.create_task(self._supervise_loop(), name="agent-supervisor"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Hand the agents over at once instead of waiting for the lease to lapse.
        with contextlib.suppress(Exception):
            async with self._db.session() as session:
                await session.execute(
                    update(ReplicaRow).where(ReplicaRow.id == self.replica_id).values(lease_until=utcnow())
                )

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
    async def _renew_lease(self) -> None:
        now = utcnow()
        until = now + timedelta(seconds=self._settings.agent_lease_seconds)
        async with self._db.session() as session:
            result = await session.execute(
                update(ReplicaRow).where(ReplicaRow.id == self.replica_id).values(lease_until=until)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                session.add(
                    ReplicaRow(id=self.replica_id, address=self._address, started_at=now, lease_until=until)
                )

    async def _lease_loop(self) -> None:
        interval = max(0.2, self._settings.agent_lease_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._renew_lease()
                await self._claim_orphaned_agents()
            except Exception:
                log.exception("lease renewal or failover scan failed")

    async def _claim_orphaned_agents(self) -> None:
        now = utcnow()
        live = select(ReplicaRow.id).where(ReplicaRow.lease_until > now)
        needs_owner = or_(
            AgentRow.lifecycle_state.in_(LIVE),
            and_(AgentRow.lifecycle_state == "failed", AgentRow.next_attempt_at.is_not(None)),
        )
        async with self._db.reader() as session:
            rows = (
                await session.execute(
                    select(AgentRow.id, AgentRow.owner).where(
                        needs_owner,
                        or_(
                            and_(AgentRow.owner.is_not(None), AgentRow.owner.not_in(live)),
                            and_(AgentRow.owner.is_(None), AgentRow.updated_at < now - UNOWNED_GRACE),
                        ),
                    )
                )
            ).all()
        claimed: list[str] = []
        for agent_id, old_owner in rows:
            async with self._db.session() as session:
                owner_matches = AgentRow.owner.is_(None) if old_owner is None else AgentRow.owner == old_owner
                result = await session.execute(
                    update(AgentRow)
                    .where(AgentRow.id == agent_id, owner_matches)
                    .values(owner=self.replica_id)
                    .execution_options(synchronize_session=False)
                )
            if result.rowcount:  # type: ignore[attr-defined]
                claimed.append(agent_id)
        if claimed:
            log.warning(
                "claimed agents of a dead replica", extra={"count": len(claimed), "replica": self.replica_id}
            )
            await self._take_over(claimed)

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
        live = select(ReplicaRow.id).where(ReplicaRow.lease_until > utcnow())
        result = await session.execute(
            update(AgentRow)
            .where(
                AgentRow.id == agent_id,
                AgentRow.run_id.is_(None),
                AgentRow.lifecycle_state.in_(("initializing", "failed")),
                or_(AgentRow.owner.is_(None), AgentRow.owner == self.replica_id, AgentRow.owner.not_in(live)),
            )
            .values(owner=self.replica_id)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

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
        self._adopted.add(run_id)
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
        if can(trigger, row.lifecycle_state):
            await self._store.apply(session, row, trigger, reason=error, actor=actor)
        over_budget = row.budget_limit is not None and row.budget_consumed >= row.budget_limit
        if row.retry_count < row.max_retries and not over_budget and row.lifecycle_state == "failed":
            row.retry_count += 1
            delay = min(MAX_BACKOFF, self._settings.retry_backoff_seconds * 2 ** (row.retry_count - 1))
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            agent_id = row.id
            after.append(lambda: self._retry_later(agent_id, delay))
        else:
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
        after: AfterCommit = []

        async def change(session: AsyncSession, row: AgentRow) -> None:
            after.clear()
            model = usage.model or row.model
            cost = self._prices.cost(model, usage.prompt_tokens, usage.completion_tokens)
            row.prompt_tokens = (row.prompt_tokens or 0) + usage.prompt_tokens
            row.completion_tokens = (row.completion_tokens or 0) + usage.completion_tokens
            row.budget_consumed = (row.budget_consumed or 0.0) + cost
            row.updated_at = utcnow()
            after.append(lambda: COST.labels(model).inc(cost))
            after.append(lambda: TOKENS.labels(model, "prompt").inc(usage.prompt_tokens))
            after.append(lambda: TOKENS.labels(model, "completion").inc(usage.completion_tokens))
            await self._check_budget(session, row, conn, after)

        with contextlib.suppress(AgentNotFoundError):
            await self._store.update(usage.agent_id, change)
        for action in after:
            action()

    async def _check_budget(
        self, session: AsyncSession, row: AgentRow, conn: WorkerConnection, after: AfterCommit
    ) -> None:
        limit = row.budget_limit
        if limit is None:
            return
        payload = {
            "agentId": row.id,
            "budgetLimit": limit,
            "budgetConsumed": row.budget_consumed,
            "percentage": round(100 * row.budget_consumed / limit, 2),
        }
        if row.budget_consumed >= 0.8 * limit and not row.budget_warned:
            row.budget_warned = True
            await self._store.publisher.publish(session, [self._store.event("budget:warning", row, payload)])
        if row.budget_consumed >= limit and row.lifecycle_state in LIVE:
            await self._store.publisher.publish(session, [self._store.event("budget:exceeded", row, payload)])
            reason = f"budget exceeded: ${row.budget_consumed:.4f} of ${limit:.4f}"
            row.last_error = reason
            if can("error", row.lifecycle_state):
                await self._store.apply(session, row, "error", reason=reason)
            row.completed_at = utcnow()
            if row.run_id:
                run_id, agent_id = row.run_id, row.id
                after.append(
                    lambda: self._spawn(
                        conn.control(run_id, agent_id, wpb.CONTROL_ACTION_KILL, reason=reason)
                    )
                )

    async def on_worker_gone(self, conn: WorkerConnection) -> None:
        log.warning("worker disconnected", extra={"workerId": conn.worker_id})
        self._wake.set()

    # ---- supervision ------------------------------------------------------------------------
    async def _supervise_loop(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_SECONDS)
            try:
                await self._supervise()
            except Exception:
                log.exception("supervision pass failed")

    async def _supervise(self) -> None:
        async with self._db.reader() as session:
            rows = (
                await session.execute(
                    select(
                        AgentRow.id,
                        AgentRow.run_id,
                        AgentRow.worker_id,
                        AgentRow.lifecycle_state,
                        AgentRow.run_started_at,
                    ).where(AgentRow.owner == self.replica_id, AgentRow.run_id.is_not(None))
                )
            ).all()
        now = time.monotonic()
        s = self._settings
        current = set()
        for agent_id, run_id, worker_id, state, _started in rows:
            if run_id is None:
                continue
            current.add(run_id)
            conn = self.registry.get(worker_id)
            if conn is None or not conn.has_run(run_id):
                first = self._missing.setdefault(run_id, now)
                # A connected worker that never mentioned the run gets the heartbeat timeout.
                limit = s.worker_lost_grace if conn is None else max(s.worker_lost_grace, s.heartbeat_timeout)
                if now - first > limit:
                    why = (
                        f"worker {worker_id} lost"
                        if conn is None
                        else f"worker {worker_id} no longer runs it"
                    )
                    await self._run_lost(agent_id, run_id, why)
                continue
            self._missing.pop(run_id, None)
            if run_id not in self._adopted:
                self._adopted.add(run_id)
                self._spawn(conn.control(run_id, agent_id, wpb.CONTROL_ACTION_ADOPT))
                log.info("adopted a run", extra={"agentId": agent_id, "runId": run_id, "workerId": worker_id})
            status = conn.runs[run_id]
            if now - conn.seen.get(run_id, now) > s.heartbeat_timeout:
                await self._run_lost(
                    agent_id, run_id, f"stuck: no heartbeat for {s.heartbeat_timeout:.0f}s", conn
                )
                continue
            if (
                s.progress_timeout > 0
                and status.state == wpb.RUN_STATE_RUNNING
                and status.HasField("last_progress")
                and (utcnow() - status.last_progress.ToDatetime(tzinfo=UTC)).total_seconds()
                > s.progress_timeout
            ):
                await self._run_lost(
                    agent_id, run_id, f"stuck: no progress for {s.progress_timeout:.0f}s", conn
                )
                continue
            self._reconcile(conn, agent_id, run_id, state, status)
        for run_id in list(self._missing):
            if run_id not in current:
                del self._missing[run_id]

    def _reconcile(
        self, conn: WorkerConnection, agent_id: str, run_id: str, desired: str, status: wpb.RunStatus
    ) -> None:
        action: wpb.ControlAction.ValueType | None = None
        if desired == "paused" and status.state == wpb.RUN_STATE_RUNNING:
            action = wpb.CONTROL_ACTION_PAUSE
        elif desired in ("executing", "waiting") and status.state == wpb.RUN_STATE_PAUSED:
            action = wpb.CONTROL_ACTION_RESUME
        elif desired in ("killed", "failed", "completed") and status.state in ALIVE_RUN_STATES:
            action = wpb.CONTROL_ACTION_KILL
        if action is not None and not conn.awaiting(run_id, action):
            self._spawn(conn.control(run_id, agent_id, action, reason="reconcile"))

    async def _run_lost(
        self, agent_id: str, run_id: str, error: str, conn: WorkerConnection | None = None
    ) -> None:
        log.warning("run lost", extra={"agentId": agent_id, "runId": run_id, "error": error})
        self._missing.pop(run_id, None)
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
