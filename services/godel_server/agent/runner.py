"""The run coordinator of one agent-service replica: it schedules the agents it owns onto
workers and turns what workers report into agent state.

- Ownership and failover: `leases.py` (a replica owns the agents whose run requests it consumed
  from the Kafka group `godel-agent-runners`, and takes over those of dead replicas).
- Scheduling (here): an owned agent that needs a run goes to the connected worker with the most
  free slots among those hosting its runtime and having the labels of its config.worker_selector;
  each run is a new session. An agent no worker can take gets its pending reason written on its
  row (only when the reason changes), and cleared when it is placed.
- Worker reports (here): updates drive the agent state machine; the agent's own failures are
  retried with exponential backoff up to `max_retries`; token usage is charged by `budget.py`.
  Updates and usage carry a per-run `seq` and are acknowledged by the servicer once committed;
  usage and a run's final update are applied once (the run's session keeps the highest `seq` of
  those applied), the other updates change nothing when they come again. A worker reports only
  on its own runs (`owns`: assigned or adopted on its connection, `WorkerConnection.owned`).
- Runs lost to infrastructure (their worker died, restarted, shut down or lost contact; the
  verdicts come from `supervisor.py`) are not the agent's failure: the agent keeps its state and
  is scheduled again at once, counted in `reschedules` (up to GODEL_AGENT_MAX_RESCHEDULES), not in
  `retry_count`; `agent:run:lost` and `agent:run:rescheduled` say so. A run is declared lost only
  when it surely runs nowhere (its worker said so, or its lease lapsed), so no agent runs twice
  at once; the new run reuses the agent's worktree.
- Reconciliation: every few seconds the replica looks for agents it owns that need a run and have
  none (new, retrying, or whose run was lost) and for agents left `completing`, and resolves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, NamedTuple

from prometheus_client import Counter
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import agent_events_pb2 as ev
from godel.v1 import agent_pb2, system_events_pb2
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.budget import Budgets, Charge
from godel_server.agent.leases import ReplicaLeases
from godel_server.agent.lifecycle import can
from godel_server.agent.logstore import LogLine, LogStore
from godel_server.agent.mapping import LOG_LEVEL, PENDING_REASON, config_from_dict
from godel_server.agent.models import AgentRow, SessionMessageRow, SessionRow
from godel_server.agent.state import AgentStateStore
from godel_server.agent.supervisor import RunSupervisor
from godel_server.agent.workers import (
    ALIVE_RUN_STATES,
    Placement,
    Unplaced,
    WorkerConnection,
    WorkerRegistry,
    unanswered,
)
from godel_server.runtime import tracing
from godel_server.runtime.agent_rules import SAFETY_RULES, safety_rules
from godel_server.runtime.config import Settings
from godel_server.runtime.errors import AgentNotFoundError
from godel_server.runtime.events import utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.pricing import PriceTable
from godel_server.runtime.statuses import LifecycleState, SessionStatus

log = logging.getLogger(__name__)

RUNS = Counter("godel_agent_runs_total", "Runs by outcome", ["outcome"])
SAFETY_BLOCKS = Counter(
    "godel_safety_blocks_total", "Refusals of guardrails (safety:block)", ["rule", "action"]
)

MAX_BACKOFF = 60.0
FINAL_RUN_STATES = {wpb.RUN_STATE_SUCCEEDED, wpb.RUN_STATE_FAILED, wpb.RUN_STATE_KILLED}
# Stopped through the API or by a budget: a run that ends then is not retried.
STOPPED = (LifecycleState.KILLED, LifecycleState.FAILED)
# States in which an agent without a run lost it to infrastructure and is to run again.
RERUN_STATES = (
    LifecycleState.SPAWNING,
    LifecycleState.EXECUTING,
    LifecycleState.WAITING,
    LifecycleState.PAUSED,
)
# A worker that rejected a run for one of these reasons may take it a moment later.
TRANSIENT_REJECTIONS = frozenset(
    {wpb.REJECT_REASON_CAPACITY, wpb.REJECT_REASON_SHUTTING_DOWN, wpb.REJECT_REASON_AGENT_BUSY}
)
TRANSIENT_RETRY_SECONDS = 0.5
# Updates that end a run: applied once (the others are idempotent, and cost no write to dedupe).
SETTLING = frozenset({*FINAL_RUN_STATES, wpb.RUN_STATE_LOST})

AfterCommit = list[Callable[[], Any]]


def _schedulable(row: AgentRow) -> bool:
    if row.run_id is not None:
        return False
    if row.lifecycle_state == LifecycleState.INITIALIZING or row.lifecycle_state in RERUN_STATES:
        return True
    return row.lifecycle_state == LifecycleState.FAILED and row.next_attempt_at is not None


# The same test in SQL (for the pending-reason update, which must not touch an agent that moved on).
SCHEDULABLE = and_(
    AgentRow.run_id.is_(None),
    or_(
        AgentRow.lifecycle_state == LifecycleState.INITIALIZING,
        AgentRow.lifecycle_state.in_(RERUN_STATES),
        and_(AgentRow.lifecycle_state == LifecycleState.FAILED, AgentRow.next_attempt_at.is_not(None)),
    ),
)


@dataclass(frozen=True)
class _Waiting:
    """An agent no worker could take: what it needs of one and the reason last written on its row."""

    placement: Placement
    unplaced: Unplaced


class _Assigned(NamedTuple):
    """A run assignment written in a transaction, sent to its worker once that commits."""

    conn: WorkerConnection
    assignment: wpb.RunAssignment


@dataclass(frozen=True)
class Decision:
    """What a consumed run request came to for its agent (`RunCoordinator.take`): its run
    assigned, no worker for it now (`waiting`), or neither (refused, or nothing to run now)."""

    agent_id: str
    carrier: dict[str, str]
    assigned: _Assigned | None = None
    waiting: _Waiting | None = None


class _Skip(Exception):
    """The agent no longer needs what the caller was about to do."""


class _NoWorker(Exception):
    """No connected worker can take the agent now (the assignment's transaction rolls back)."""

    def __init__(self, placement: Placement) -> None:
        super().__init__()
        self.placement = placement


async def _first_time(session: AsyncSession, run_id: str, seq: int) -> bool:
    """Records (in the caller's transaction) that the run's message `seq` is applied; False when it
    was applied before. Messages without a seq are always applied."""
    if not seq:
        return True
    sess = await session.get(SessionRow, run_id)
    if sess is None:
        return True
    if seq <= sess.update_seq:
        return False
    sess.update_seq = seq
    return True


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
        # The trace of a pending agent's run request, continued by its assignment (tracing on).
        self._traces: dict[str, dict[str, str]] = {}
        self._waiting: dict[str, _Waiting] = {}
        self._wake = asyncio.Event()
        self._rejected: dict[str, set[str]] = {}
        # Worker slots taken by assignments whose transaction has not committed yet, by run id.
        self._reserved: dict[str, WorkerConnection] = {}
        self._supervisor = RunSupervisor(
            settings, store.db, registry, spawn=self._spawn, on_lost=self._run_lost, on_stuck=self._run_stuck
        )
        # Agents whose completion (worktree cleanup, then `completed`) is under way here.
        self._completing: set[str] = set()
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

    def enqueue(self, agent_ids: list[str], traces: dict[str, dict[str, str]] | None = None) -> None:
        """Agents that need a run; `traces`: the trace context of each one's run request."""
        self._pending.update(agent_ids)
        for agent_id, carrier in (traces or {}).items():
            if carrier:
                self._traces[agent_id] = carrier
        for agent_id in agent_ids:
            # A new request (restart, retry, takeover): its reason is worked out and written afresh.
            self._waiting.pop(agent_id, None)
        self._wake.set()

    def nudge(self) -> None:
        """Worker capacity changed: retry pending agents now."""
        if self._pending:
            self._wake.set()

    # ---- leases and failover ----------------------------------------------------------------
    async def _lease_loop(self) -> None:
        interval = self._leases.renew_interval
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
                if row.lifecycle_state == LifecycleState.COMPLETING:
                    self._complete(row.id)
                elif _schedulable(row):
                    self.enqueue([row.id])
            # Runs in flight are adopted (or declared lost) by the supervisor.

    # ---- scheduling -------------------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        last_scan: float | None = None  # the first pass scans at once, whatever the clock reads
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            try:
                now = time.monotonic()
                if last_scan is None or now - last_scan > 5.0:
                    last_scan = now
                    await self._scan_owned()
                for agent_id in list(self._pending):
                    waiting = self._waiting.get(agent_id)
                    if waiting is not None and not self._placeable(agent_id, waiting.placement):
                        # Known to wait: no database read until some worker could take it.
                        await self._note_pending(agent_id, waiting.placement)
                        continue
                    if await self._traced_assign(agent_id):
                        self._pending.discard(agent_id)
                        self._waiting.pop(agent_id, None)
                        self._traces.pop(agent_id, None)
            except Exception:
                log.exception("scheduling pass failed")
                await asyncio.sleep(0.5)

    async def _scan_owned(self) -> None:
        """Reconciliation: the agents this replica owns that need a run and have none are pending,
        and those left `completing` (e.g. by a crash between the run's end and the cleanup) are
        completed."""
        now = utcnow()
        async with self._db.reader() as session:
            rows = (
                await session.execute(
                    select(AgentRow.id, AgentRow.lifecycle_state).where(
                        AgentRow.owner == self.replica_id,
                        AgentRow.run_id.is_(None),
                        or_(
                            and_(
                                SCHEDULABLE,
                                or_(AgentRow.next_attempt_at.is_(None), AgentRow.next_attempt_at <= now),
                            ),
                            AgentRow.lifecycle_state == LifecycleState.COMPLETING,
                        ),
                    )
                )
            ).all()
        for agent_id, state in rows:
            if state == LifecycleState.COMPLETING:
                self._complete(agent_id)
            else:
                self._pending.add(agent_id)

    async def _traced_assign(self, agent_id: str) -> bool:
        """_assign, in the trace of the agent's run request when there is one."""
        carrier = self._traces.get(agent_id)
        if not carrier:
            return await self._assign(agent_id)
        with tracing.span("schedule run", parent=carrier, attributes={"godel.agent.id": agent_id}):
            return await self._assign(agent_id)

    async def _assign(self, agent_id: str) -> bool:
        """Assigns a run to a worker; False when no worker has room (the agent stays pending).

        One transaction reads the agent, decides and writes the run: no read of its own before it
        (a round trip and a load of the row per assignment)."""
        run_id = new_id()

        async def change(session: AsyncSession, row: AgentRow) -> _Assigned | None:
            if row.owner != self.replica_id:
                raise _Skip
            return await self._decide(session, row, run_id)

        try:
            _, assigned = await self._store.update(agent_id, change)
        except (_Skip, AgentNotFoundError):
            return True
        except _NoWorker as waiting:
            await self._note_pending(agent_id, waiting.placement)
            return False
        except BaseException:
            self._release(run_id)
            raise
        if assigned is not None:
            self._send(assigned)
        return True  # assigned, or refused: no run could help it

    async def take(self, session: AsyncSession, agent_id: str, carrier: dict[str, str]) -> Decision | None:
        """A run request consumed by this replica, in the consumer's transaction: claims the agent
        and assigns its run (or refuses it, or notes why it waits) in that same transaction, so a
        request costs one transaction, not three (claim, assignment, pending reason). None when
        the agent was not claimed (another live replica owns it, or it needs no run). The decision
        takes effect with `taken()` once the transaction has committed; `untaken()` forgets it
        when it did not."""
        row = await self._leases.claim(session, agent_id)
        if row is None:
            return None
        if not carrier:
            return await self._decide_request(session, row, carrier)
        with tracing.span("schedule run", parent=carrier, attributes={"godel.agent.id": agent_id}):
            return await self._decide_request(session, row, carrier)

    async def _decide_request(
        self, session: AsyncSession, row: AgentRow, carrier: dict[str, str]
    ) -> Decision:
        run_id = new_id()
        try:
            return Decision(row.id, carrier, assigned=await self._decide(session, row, run_id))
        except _Skip:
            return Decision(row.id, carrier)
        except _NoWorker as waiting:
            unplaced = await self._write_reason(session, row.id, waiting.placement)
            return Decision(row.id, carrier, waiting=_Waiting(waiting.placement, unplaced))
        except BaseException:
            self._release(run_id)
            raise

    def taken(self, decisions: list[Decision]) -> None:
        """The run requests' transaction committed: its assignments go to their workers, the agents
        that wait are pending here."""
        for one in decisions:
            if one.waiting is None:  # a request it waited with before is answered
                self._pending.discard(one.agent_id)
                self._waiting.pop(one.agent_id, None)
                self._traces.pop(one.agent_id, None)
            if one.assigned is not None:
                self._send(one.assigned)
            elif one.waiting is not None:
                self._pending.add(one.agent_id)
                self._waiting[one.agent_id] = one.waiting
                if one.carrier:
                    self._traces[one.agent_id] = one.carrier

    def untaken(self, decisions: list[Decision]) -> None:
        """The run requests' transaction did not commit: the slots it took on workers are free."""
        for one in decisions:
            if one.assigned is not None:
                self._release(one.assigned.assignment.run_id)

    async def _decide(self, session: AsyncSession, row: AgentRow, run_id: str) -> _Assigned | None:
        """What the agent's run request comes to, written in the caller's transaction: its run
        assigned to a worker (whose slot is taken at once: `_release` gives it back if the
        transaction fails), or the agent refused (None). Raises _Skip when it needs no run now and
        _NoWorker when no worker can take it."""
        if not _schedulable(row):
            raise _Skip
        now = utcnow()
        if row.next_attempt_at is not None and row.next_attempt_at > now:
            raise _Skip  # its retry timer enqueues it again
        config = config_from_dict(row.config)
        placement = Placement.of(config)
        if placement.runtime == "command" and not config.command:
            await self._refuse(
                session,
                row,
                "nothing to run: give the agent a command (config.command) or use the openai runtime",
            )
            return None
        try:
            safety = safety_rules(row.safety_boundaries)
        except ValueError as exc:  # stored before the API checked its shape
            await self._refuse(session, row, f"safety_boundaries: {exc}")
            return None
        depth = 0
        if row.parent_session_id:
            parent = await session.get(SessionRow, row.parent_session_id)
            depth = parent.depth + 1 if parent else 1
        self._release(run_id)  # a retried transaction decides again
        conn = self.registry.pick(placement, frozenset(self._rejected.get(row.id, ())))
        if conn is None:
            raise _NoWorker(placement)
        conn.assigned(run_id)
        self._reserved[run_id] = conn
        session.add(
            SessionRow(
                id=run_id,
                agent_id=row.id,
                parent_id=row.parent_session_id,
                depth=depth,
                status=SessionStatus.PENDING,
                variables={},
                meta={"workerId": conn.worker_id, "attempt": row.retry_count, "rerun": row.reschedules},
                created_at=now,
                updated_at=now,
                update_seq=0,
            )
        )
        # After a lost run the worktree may exist even if its path never reached this row.
        reuse = row.worktree_path is not None or row.reschedules > 0
        row.run_id = run_id
        row.session_id = run_id
        row.worker_id = conn.worker_id
        row.run_started_at = now
        row.next_attempt_at = None
        row.pending_reason = None
        row.pending_message = None
        row.updated_at = now
        return _Assigned(
            conn,
            wpb.RunAssignment(
                run_id=run_id,
                agent_id=row.id,
                session_id=run_id,
                task=row.task,
                model=row.model,
                config=config,
                repo=row.repo or "",
                branch=f"godel/{row.id}",
                reuse_worktree=reuse,
                start_paused=row.lifecycle_state == LifecycleState.PAUSED,
                safety=safety,
                traceparent=tracing.current_headers().get("traceparent", ""),
            ),
        )

    def _release(self, run_id: str) -> None:
        """Gives back the worker slot taken for a run whose assignment was not committed."""
        conn = self._reserved.pop(run_id, None)
        if conn is not None:
            conn.unassigned(run_id)

    def _send(self, assigned: _Assigned) -> None:
        """A committed assignment goes to its worker."""
        conn, assignment = assigned
        self._reserved.pop(assignment.run_id, None)
        conn.owned.add((assignment.agent_id, assignment.run_id))
        conn.send(wpb.ConnectResponse(assign=assignment))
        log.info(
            "run assigned",
            extra={"agentId": assignment.agent_id, "runId": assignment.run_id, "workerId": conn.worker_id},
        )

    def _placeable(self, agent_id: str, placement: Placement) -> bool:
        return self.registry.pick(placement, frozenset(self._rejected.get(agent_id, ()))) is not None

    async def _note_pending(self, agent_id: str, placement: Placement) -> None:
        """Writes why the agent waits on its row, when that differs from what was written last."""
        known = self._waiting.get(agent_id)
        unplaced = self.registry.unplaced(placement, self.replica_id)
        if known is not None and known.unplaced == unplaced:
            return
        if not unplaced.passing:  # a moment's wait: no write, no log (a burst would write each agent)
            async with self._db.session() as session:
                await self._write_reason(session, agent_id, placement, unplaced)
        self._waiting[agent_id] = _Waiting(placement, unplaced)

    async def _write_reason(
        self, session: AsyncSession, agent_id: str, placement: Placement, unplaced: Unplaced | None = None
    ) -> Unplaced:
        """Writes (in the caller's transaction) why the agent waits on its row, unless that is only
        for a moment; returns the reason.

        A plain UPDATE: the agent's version is not bumped (the reason is not a change of the agent,
        and a client's expected_version stays valid), and an agent that has moved on is not touched.
        """
        unplaced = unplaced or self.registry.unplaced(placement, self.replica_id)
        if unplaced.passing:
            return unplaced
        await session.execute(
            update(AgentRow)
            .where(AgentRow.id == agent_id, AgentRow.owner == self.replica_id, SCHEDULABLE)
            .values(pending_reason=PENDING_REASON.name(unplaced.reason), pending_message=unplaced.message)
            .execution_options(synchronize_session=False)
        )
        log.info("agent waits for a worker", extra={"agentId": agent_id, "reason": unplaced.message})
        return unplaced

    async def _refuse(self, session: AsyncSession, row: AgentRow, reason: str) -> None:
        """Fails an agent that no run could help (a retry would fail the same way), in the caller's
        transaction."""
        row.last_error = reason
        row.next_attempt_at = None
        row.completed_at = utcnow()
        if can("spawn_error", row.lifecycle_state):
            await self._store.apply(session, row, "spawn_error", reason=reason)

    def _retry_later(self, agent_id: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.enqueue, [agent_id])

    # ---- worker messages --------------------------------------------------------------------
    async def owns(
        self, conn: WorkerConnection, agent_id: str, run_id: str, what: str, row: AgentRow | None = None
    ) -> bool:
        """Whether a worker's connection may report on a run (its `what`: update, usage, logs...):
        the run was assigned or adopted on this connection, or it is the agent's current run on this
        worker (a worker that reconnects after a restart of this replica goes on sending its runs'
        messages here), which adopts it on this connection. `row`: the agent, if the caller read it."""
        if (agent_id, run_id) in conn.owned:
            return True
        if not agent_id or not run_id:
            return False
        if row is None:
            async with self._db.reader() as session:
                row = await session.get(AgentRow, agent_id)
        if row is None or row.run_id != run_id or row.worker_id != conn.worker_id:
            whose = (
                "assigned to another worker" if row is not None and row.run_id == run_id else "not its own"
            )
            log.warning(
                f"ignored a worker's {what} of a run {whose}",
                extra={"workerId": conn.worker_id, "agentId": agent_id, "runId": run_id},
            )
            return False
        conn.owned.add((agent_id, run_id))
        return True

    async def on_update(self, conn: WorkerConnection, upd: wpb.RunUpdate) -> None:
        """Applies a worker's RunUpdate (a final one once: a `seq` applied before changes nothing);
        returns once the change is committed."""
        if upd.state == wpb.RUN_STATE_STARTING and (upd.agent_id, upd.run_id) in conn.owned:
            # A run assigned on this connection has started: nothing to write. All reading the
            # agent could find is that it moved on to another run; its kill or restart stops this
            # one, and so does the run's next update. A transaction less per agent brought up.
            return
        after: AfterCommit = []
        if upd.state in FINAL_RUN_STATES or upd.state == wpb.RUN_STATE_LOST:
            # The worker sent the run's last lines before this update: store them first, so
            # whoever sees the agent finished also sees all of its logs.
            await self._logs.flush()

        async def change(session: AsyncSession, row: AgentRow) -> None:
            after.clear()
            if row.run_id != upd.run_id:
                if upd.state in ALIVE_RUN_STATES:
                    # A run the agent no longer wants (killed, restarted, run elsewhere): stop it
                    # (on the worker that reports it, so no worker can stop another's run).
                    after.append(
                        lambda: self._spawn(conn.control(upd.run_id, upd.agent_id, wpb.CONTROL_ACTION_KILL))
                    )
                return
            if not await self.owns(conn, row.id, upd.run_id, "update", row):
                return
            if upd.state in SETTLING and not await _first_time(session, upd.run_id, upd.seq):
                return
            if upd.commits:
                row.commits = list(upd.commits)
            if upd.worktree:
                row.worktree_path = upd.worktree
            if upd.state == wpb.RUN_STATE_WORKTREE_READY:
                if can("worktree_created", row.lifecycle_state):
                    await self._store.apply(session, row, "worktree_created", actor=conn.worker_id)
            elif upd.state == wpb.RUN_STATE_RUNNING:
                await self._on_running(session, row, conn, after)
            elif upd.state == wpb.RUN_STATE_REJECTED:
                await self._on_rejected(session, row, conn, upd, after)
            elif upd.state == wpb.RUN_STATE_LOST:
                reason = f"worker {conn.worker_id}: {upd.error or 'the run was lost'}"
                await self._reschedule(session, row, reason, after)
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
        if row.lifecycle_state == LifecycleState.INITIALIZING:
            await self._store.apply(session, row, "worktree_created", actor=conn.worker_id)
        if row.lifecycle_state == LifecycleState.SPAWNING:
            await self._store.apply(session, row, "session_started", actor=conn.worker_id)
        elif (
            row.lifecycle_state == LifecycleState.FAILED
            and row.next_attempt_at is None
            and can("retry", LifecycleState.FAILED)
        ):
            await self._store.apply(
                session, row, "retry", actor=conn.worker_id, reason=f"attempt {row.retry_count + 1}"
            )
        sess = await session.get(SessionRow, row.run_id)
        if sess is not None and sess.status == SessionStatus.PENDING:
            sess.status = SessionStatus.ACTIVE
            sess.updated_at = utcnow()
        if row.lifecycle_state == LifecycleState.PAUSED:
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
        await self.close_session(session, row, SessionStatus.FAILED)
        row.run_id = None
        row.worker_id = None
        row.run_started_at = None
        if upd.reject_reason in TRANSIENT_REJECTIONS:
            # Full (this replica's count was behind), stopping, or still ending the agent's last
            # run: not a verdict on the agent; it goes to the next worker with room.
            if upd.reject_reason == wpb.REJECT_REASON_CAPACITY:
                conn.free = 0
            self._requeue(row, TRANSIENT_RETRY_SECONDS, after)
            return
        rejected = self._rejected.setdefault(row.id, set())
        rejected.add(conn.worker_id)
        if len(rejected) >= 3 or len(rejected) >= len(self.registry.workers):
            reason = f"no worker accepted the run: {upd.error}"
            await self._give_up(session, row, reason)
            self._rejected.pop(row.id, None)
            return
        self._requeue(row, 0.2, after)

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
        succeeded = upd.state == wpb.RUN_STATE_SUCCEEDED and row.lifecycle_state in (
            LifecycleState.EXECUTING,
            LifecycleState.WAITING,
        )
        await self.close_session(session, row, SessionStatus.COMPLETED if succeeded else SessionStatus.FAILED)
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
            after.append(lambda: self._complete(agent_id))
            return
        if row.lifecycle_state in STOPPED:
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
        starting = row.lifecycle_state in (LifecycleState.INITIALIZING, LifecycleState.SPAWNING)
        trigger = "spawn_error" if starting else "error"
        over_budget = row.budget_limit is not None and row.budget_consumed >= row.budget_limit
        retry = row.retry_count < row.max_retries and not over_budget
        if not retry:
            # Set before the transition: its agent:error event says whether a retry follows.
            row.next_attempt_at = None
            row.completed_at = utcnow()
        if can(trigger, row.lifecycle_state):
            await self._store.apply(session, row, trigger, reason=error, actor=actor)
        if retry and row.lifecycle_state == LifecycleState.FAILED:
            row.retry_count += 1
            delay = min(MAX_BACKOFF, self._settings.retry_backoff_seconds * 2 ** (row.retry_count - 1))
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            agent_id = row.id
            after.append(lambda: self._retry_later(agent_id, delay))
        elif retry:
            row.next_attempt_at = None
            row.completed_at = utcnow()

    def _requeue(self, row: AgentRow, delay: float, after: AfterCommit) -> None:
        """The agent (whose run just ended without an outcome) is scheduled again after `delay` s."""
        if row.lifecycle_state == LifecycleState.FAILED:
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)  # a retry that has to start over
        agent_id = row.id
        after.append(lambda: self._retry_later(agent_id, delay))

    async def _give_up(self, session: AsyncSession, row: AgentRow, reason: str) -> None:
        """Fails the agent for good (no retry) with `reason`."""
        row.last_error = reason
        row.next_attempt_at = None
        row.completed_at = utcnow()
        starting = row.lifecycle_state in (LifecycleState.INITIALIZING, LifecycleState.SPAWNING)
        trigger = "spawn_error" if starting else "error"
        if can(trigger, row.lifecycle_state):
            await self._store.apply(session, row, trigger, reason=reason, actor="system")

    async def _reschedule(
        self, session: AsyncSession, row: AgentRow, reason: str, after: AfterCommit
    ) -> None:
        """The agent's run was lost to infrastructure and runs nowhere any more: the agent keeps its
        state and is scheduled again (`agent:run:lost`, `agent:run:rescheduled`), at most
        GODEL_AGENT_MAX_RESCHEDULES times (a restart of the agent starts the count again)."""
        lost_run, worker_id, now = row.run_id, row.worker_id, utcnow()
        if row.run_started_at is not None:
            row.runtime_seconds += max(0, int((now - row.run_started_at).total_seconds()))
        sess = await session.get(SessionRow, lost_run) if lost_run else None
        if sess is not None and sess.completed_at is None:
            sess.meta = {**(sess.meta or {}), "lost": reason}
        await self.close_session(session, row, SessionStatus.FAILED)
        row.run_id = None
        row.worker_id = None
        row.run_started_at = None
        RUNS.labels("lost").inc()
        lost = ev.AgentRunLost(
            agent_id=row.id, run_id=lost_run or "", worker_id=worker_id or "", reason=reason
        )
        await self._store.publisher.publish(session, [self._store.event(lost, row)])
        retrying = row.lifecycle_state == LifecycleState.FAILED and row.completed_at is None
        if not (
            retrying
            or row.lifecycle_state == LifecycleState.INITIALIZING
            or row.lifecycle_state in RERUN_STATES
        ):
            # Killed or failed meanwhile: nothing runs again; the worktree goes as on a kill.
            worktree, repo, agent_id = row.worktree_path, row.repo, row.id
            if worktree and row.lifecycle_state in STOPPED and not self._keep_worktree(row):
                after.append(lambda: self._spawn(self.cleanup(None, agent_id, worktree, repo)))
            return
        limit = self._settings.max_reschedules
        if row.reschedules >= limit:
            await self._give_up(
                session,
                row,
                f"its run was lost {row.reschedules + 1} times (GODEL_AGENT_MAX_RESCHEDULES is {limit}); "
                f"last: {reason}",
            )
            return
        row.reschedules += 1
        rescheduled = ev.AgentRunRescheduled(
            agent_id=row.id,
            previous_run_id=lost_run or "",
            reason=reason,
            reschedules=row.reschedules,
            max_reschedules=limit,
        )
        await self._store.publisher.publish(session, [self._store.event(rescheduled, row)])
        self._requeue(row, 0.0, after)

    def _keep_worktree(self, row: AgentRow) -> bool:
        return bool((row.config or {}).get("keep_worktree"))

    async def close_session(self, session: AsyncSession, row: AgentRow, status: SessionStatus) -> None:
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
    ) -> wpb.ControlAck | None:
        """Removes an agent's worktree through a worker (the branch and its commits stay); the
        worker's answer, or None when there was nothing to do or no worker to do it."""
        if not worktree:
            return None
        conn = self.registry.get(worker_id) or self.registry.any()
        if conn is None:
            log.warning("no worker to remove a worktree", extra={"agentId": agent_id, "worktree": worktree})
            return None
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
        return ack

    def _complete(self, agent_id: str) -> None:
        """Completes an agent left `completing` (once at a time per agent)."""
        if agent_id in self._completing:
            return
        self._completing.add(agent_id)

        async def complete() -> None:
            try:
                await self._finish_completion(agent_id)
            finally:
                self._completing.discard(agent_id)

        self._spawn(complete())

    async def _finish_completion(self, agent_id: str) -> None:
        async with self._db.reader() as session:
            row = await session.get(AgentRow, agent_id)
        if row is None or row.lifecycle_state != LifecycleState.COMPLETING or row.owner != self.replica_id:
            return
        ok = True
        if not self._keep_worktree(row):
            ack = await self.cleanup(None, agent_id, row.worktree_path, row.repo)
            if ack is not None and unanswered(ack):
                # The worker went away meanwhile: not the agent's failure; reconciliation tries again.
                return
            ok = ack is None or ack.ok

        async def change(session: AsyncSession, row: AgentRow) -> None:
            if row.lifecycle_state != LifecycleState.COMPLETING:
                return
            row.completed_at = utcnow()
            if ok:
                await self._store.apply(session, row, "cleanup_done")
            else:
                row.last_error = "removing the worktree failed"
                await self._store.apply(session, row, "cleanup_error", reason=row.last_error)

        with contextlib.suppress(AgentNotFoundError):
            await self._store.update(agent_id, change)

    async def on_logs(self, conn: WorkerConnection, msg: wpb.RunLogs) -> None:
        if not await self.owns(conn, msg.agent_id, msg.run_id, "logs"):
            return
        lines = [
            LogLine(
                time=line.time.ToDatetime(tzinfo=UTC) if line.HasField("time") else utcnow(),
                level=LOG_LEVEL.get(line.level) or "INFO",
                stream=line.stream or "stdout",
                message=line.message,
            )
            for line in msg.lines
        ]
        self._logs.append(msg.agent_id, msg.run_id, lines)

    async def on_session_message(self, conn: WorkerConnection, msg: wpb.RunSessionMessage) -> None:
        if not await self.owns(conn, msg.agent_id, msg.run_id, "session message"):
            return
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
        """Charges a worker's RunUsage once (a `seq` applied before changes nothing)."""
        if not await self.owns(conn, usage.agent_id, usage.run_id, "usage"):
            return

        async def change(session: AsyncSession, row: AgentRow) -> tuple[Charge | None, str | None]:
            if not await _first_time(session, usage.run_id, usage.seq):
                return None, row.run_id
            return await self._budgets.charge(session, row, usage), row.run_id

        try:
            _, (charge, run_id) = await self._store.update(usage.agent_id, change)
        except AgentNotFoundError:
            return
        if charge is None:
            return
        charge.record()
        if charge.exceeded and run_id:
            self._spawn(conn.control(run_id, usage.agent_id, wpb.CONTROL_ACTION_KILL, reason=charge.exceeded))

    async def on_safety_block(self, conn: WorkerConnection, block: wpb.SafetyBlock) -> None:
        """A guardrail refused something the run tried: `safety:block`, and the agent fails (no
        retry: the run would break the rule again) or is paused (the worker holds the run)."""
        pause = block.action == agent_pb2.SAFETY_ACTION_PAUSE
        reason = f"safety: {block.rule}: {block.detail}"

        async def change(session: AsyncSession, row: AgentRow) -> None:
            if row.run_id != block.run_id:
                return
            blocked = system_events_pb2.SafetyBlocked(
                agent_id=row.id,
                run_id=block.run_id,
                worker_id=conn.worker_id,
                rule=block.rule,
                detail=block.detail,
                action=agent_pb2.SAFETY_ACTION_PAUSE if pause else agent_pb2.SAFETY_ACTION_FAIL,
            )
            await self._store.publisher.publish(session, [self._store.event(blocked, row)])
            if pause:
                # Held before its command started: the run is underway all the same.
                for trigger in ("worktree_created", "session_started"):
                    if can(trigger, row.lifecycle_state):
                        await self._store.apply(session, row, trigger, actor=conn.worker_id)
                if can("pause_command", row.lifecycle_state):
                    await self._store.apply(
                        session, row, "pause_command", reason=reason, actor=conn.worker_id
                    )
                    row.pause_time = utcnow()
                    row.paused_by = "safety"
                return
            row.last_error = reason
            row.next_attempt_at = None
            row.completed_at = utcnow()
            trigger = "spawn_error" if row.lifecycle_state in ("initializing", "spawning") else "error"
            if can(trigger, row.lifecycle_state):
                await self._store.apply(session, row, trigger, reason=reason, actor=conn.worker_id)

        # Bounded metric labels: "config.sandbox.read_paths" counts as "config.sandbox".
        rule = next((r for r in SAFETY_RULES if block.rule == r or block.rule.startswith(r + ".")), "other")
        SAFETY_BLOCKS.labels(rule, "pause" if pause else "fail").inc()
        log.warning(
            "safety block", extra={"agentId": block.agent_id, "rule": block.rule, "detail": block.detail}
        )
        with contextlib.suppress(AgentNotFoundError):
            await self._store.update(block.agent_id, change)

    async def on_worker_gone(self, conn: WorkerConnection) -> None:
        log.warning("worker disconnected", extra={"workerId": conn.worker_id})
        self._wake.set()

    # ---- supervision ------------------------------------------------------------------------
    async def _run_lost(self, agent_id: str, run_id: str, reason: str) -> None:
        """The supervisor's verdict: the run is lost to infrastructure and runs nowhere."""
        log.warning("run lost", extra={"agentId": agent_id, "runId": run_id, "reason": reason})
        after: AfterCommit = []

        async def change(session: AsyncSession, row: AgentRow) -> None:
            after.clear()
            if row.run_id == run_id:
                await self._reschedule(session, row, reason, after)

        with contextlib.suppress(AgentNotFoundError):
            await self._store.update(agent_id, change)
        for action in after:
            action()

    async def _run_stuck(self, agent_id: str, run_id: str, error: str, conn: WorkerConnection) -> None:
        """The supervisor's verdict: the run makes no progress, which is the agent's failure."""
        log.warning("run stuck", extra={"agentId": agent_id, "runId": run_id, "error": error})
        ack = await conn.control(run_id, agent_id, wpb.CONTROL_ACTION_KILL, reason=error)
        if not ack.ok:
            return  # not confirmed stopped (or already ended): the next pass looks again
        after: AfterCommit = []

        async def change(session: AsyncSession, row: AgentRow) -> None:
            after.clear()
            if row.run_id != run_id:
                return
            await self.close_session(session, row, SessionStatus.FAILED)
            row.run_id = None
            row.worker_id = None
            row.run_started_at = None
            if row.lifecycle_state in STOPPED:
                return
            await self._fail(session, row, error, actor="system", after=after)

        with contextlib.suppress(AgentNotFoundError):
            await self._store.update(agent_id, change)
        for action in after:
            action()
