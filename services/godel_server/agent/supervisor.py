"""Supervision of the runs a replica owns: what each run's worker says about it, the verdict on it
(`judge`, pure: no database, no clock), and what the replica does about that.

Every PASS_SECONDS the replica looks at each agent it owns that has a run:
- its worker holds the run and sends its updates here: the desired state in the database
  (paused, resumed, killed) is pushed to the worker;
- its worker holds the run but sends its updates elsewhere (after a failover, or a restart of this
  replica or of the worker): ADOPT, and the worker sends here what it has not had acknowledged;
- its connected worker does not report the run: the replica asks, with ADOPT (sent after the
  assignment on the same stream): a worker that holds the run after all takes the replica as its
  owner and goes on; one that answers "unknown run" does not hold it, and the run is lost;
- its worker reports the run ended, but the final update never arrives (none of the run's updates
  waits to be applied here, for GODEL_WORKER_LOST_GRACE): lost;
- its worker has been out of contact (disconnected, or connected and silent) for longer than
  GODEL_WORKER_LOST_GRACE, counted from when this replica could first have heard from it about
  this run: lost. A worker stops a run whose owner it has not heard from for its run lease (2/3 of
  the grace), so by then the run executes nowhere and can safely run again;
- it runs but has printed nothing for GODEL_AGENT_PROGRESS_TIMEOUT: stuck, which is the agent's
  failure (killed, retried per its policy).
Lost runs are run again by the coordinator (runner.py): infrastructure, not the agent, failed."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import select

from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.models import AgentRow
from godel_server.agent.workers import ALIVE_RUN_STATES, WorkerConnection, WorkerRegistry, unanswered
from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.statuses import LifecycleState

log = logging.getLogger(__name__)

PASS_SECONDS = 1.0
# A connected worker's reports may miss a run assigned a moment ago (its next heartbeat lists it).
# Asking too early costs an ADOPT, nothing else.
MISSING_GRACE = 1.5

# (agent id, run id, why)
OnLost = Callable[[str, str, str], Awaitable[None]]
# (agent id, run id, why, the worker holding the run)
OnStuck = Callable[[str, str, str, WorkerConnection], Awaitable[None]]


class Verdict(enum.Enum):
    HEALTHY = "healthy"
    WAIT = "wait"
    ADOPT = "adopt"
    ASK = "ask"
    LOST = "lost"
    STUCK = "stuck"


@dataclass(frozen=True)
class Sighting:
    """What the replica knows about one of its runs at one moment (durations in seconds)."""

    worker_id: str
    connected: bool
    # As the worker last reported it; None when its connected worker does not report it.
    status: wpb.RunStatus | None
    # The worker sends the run's updates to this replica (assigned or adopted on this connection:
    # `WorkerConnection.owned`).
    owned_here: bool
    # Since the worker was last heard from, or since this replica took the run, whichever is later.
    silence: float
    # Since the connected worker's reports stopped listing the run (0 while they list it).
    missing: float = 0.0
    # Since the worker first reported the run ended (0 while it runs).
    ended: float = 0.0
    # An update of the run received from its worker waits to be applied here (the report that the
    # run ended may have overtaken the final update).
    applying: bool = False
    # Since the run's last output, when it is running (None: unknown).
    quiet: float | None = None


@dataclass(frozen=True)
class Timing:
    lost_grace: float
    progress_timeout: float = 0.0
    missing_grace: float = MISSING_GRACE


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""


def judge(s: Sighting, t: Timing) -> Decision:
    """The verdict on one run (see the module docstring)."""
    worker = f"worker {s.worker_id or '(none)'}"
    if s.silence > t.lost_grace:
        how = "connected but silent" if s.connected else "not connected"
        return Decision(
            Verdict.LOST,
            f"{worker} out of contact for {s.silence:.0f}s ({how}; GODEL_WORKER_LOST_GRACE is {t.lost_grace:g}s)",
        )
    if not s.connected:
        return Decision(Verdict.WAIT)
    if s.status is None:
        if s.missing > t.missing_grace:
            return Decision(Verdict.ASK, f"{worker} does not hold the run (it restarted, or never got it)")
        return Decision(Verdict.WAIT)
    if not s.owned_here:
        return Decision(Verdict.ADOPT)
    if s.status.state not in ALIVE_RUN_STATES:
        if s.ended > t.lost_grace and not s.applying:
            state = wpb.RunState.Name(s.status.state).removeprefix("RUN_STATE_")
            return Decision(
                Verdict.LOST, f"{worker} reports the run ended ({state}) but its final update never came"
            )
        return Decision(Verdict.WAIT)
    if (
        t.progress_timeout > 0
        and s.status.state == wpb.RUN_STATE_RUNNING
        and s.quiet is not None
        and s.quiet > t.progress_timeout
    ):
        return Decision(Verdict.STUCK, f"stuck: no progress for {t.progress_timeout:.0f}s")
    return Decision(Verdict.HEALTHY)


class RunSupervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: WorkerRegistry,
        *,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        on_lost: OnLost,
        on_stuck: OnStuck,
    ) -> None:
        self._timing = Timing(settings.worker_lost_grace, settings.progress_timeout)
        self._db = db
        self._registry = registry
        self._spawn = spawn
        self._on_lost = on_lost
        self._on_stuck = on_stuck
        self.replica_id = settings.instance_id
        # Per run (monotonic): when this replica first saw it among its own, since when its connected
        # worker has not reported it, since when its worker reports it ended.
        self._first_seen: dict[str, float] = {}
        self._missing: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        # Runs whose worker is being asked whether it holds them.
        self._asking: set[str] = set()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PASS_SECONDS)
            try:
                await self.check()
            except Exception:
                log.exception("supervision pass failed")

    def forget(self, run_id: str) -> None:
        for times in (self._first_seen, self._missing, self._ended):
            times.pop(run_id, None)

    async def check(self) -> None:
        async with self._db.reader() as session:
            rows = (
                await session.execute(
                    select(
                        AgentRow.id,
                        AgentRow.run_id,
                        AgentRow.worker_id,
                        AgentRow.lifecycle_state,
                        AgentRow.completed_at,
                    ).where(AgentRow.owner == self.replica_id, AgentRow.run_id.is_not(None))
                )
            ).all()
        now = time.monotonic()
        current: set[str] = set()
        for agent_id, run_id, worker_id, state, completed_at in rows:
            if run_id is None:
                continue
            current.add(run_id)
            # A failed agent without a completion time is being retried: its run is meant to go on.
            retrying = state == LifecycleState.FAILED and completed_at is None
            desired = LifecycleState.EXECUTING if retrying else state
            await self._check_run(agent_id, run_id, worker_id or "", desired, now)
        for times in (self._first_seen, self._missing, self._ended):
            for run_id in [r for r in times if r not in current]:
                del times[run_id]

    def sighting(
        self, agent_id: str, run_id: str, worker_id: str, now: float
    ) -> tuple[Sighting, WorkerConnection | None]:
        conn = self._registry.get(worker_id)
        status = conn.runs.get(run_id) if conn is not None else None
        since = self._first_seen.setdefault(run_id, now)
        contact = self._registry.last_contact(worker_id)
        if contact is not None:
            since = max(since, contact)
        missing = ended = 0.0
        if conn is not None and status is None:
            missing = now - self._missing.setdefault(run_id, now)
        else:
            self._missing.pop(run_id, None)
        applying = conn is not None and conn.applying(run_id)
        if status is not None and status.state not in ALIVE_RUN_STATES and not applying:
            ended = now - self._ended.setdefault(run_id, now)
        else:
            # The grace for the final update counts from when nothing of the run waits any more.
            self._ended.pop(run_id, None)
        quiet = None
        if status is not None and status.HasField("last_progress"):
            quiet = (utcnow() - status.last_progress.ToDatetime(tzinfo=UTC)).total_seconds()
        sighting = Sighting(
            worker_id=worker_id,
            connected=conn is not None,
            status=status,
            owned_here=conn is not None and (agent_id, run_id) in conn.owned,
            silence=now - since,
            missing=missing,
            ended=ended,
            applying=applying,
            quiet=quiet,
        )
        return sighting, conn

    async def _check_run(
        self, agent_id: str, run_id: str, worker_id: str, desired: LifecycleState, now: float
    ) -> None:
        sighting, conn = self.sighting(agent_id, run_id, worker_id, now)
        decision = judge(sighting, self._timing)
        verdict = decision.verdict
        if verdict is Verdict.LOST:
            self.forget(run_id)
            await self._on_lost(agent_id, run_id, decision.reason)
        elif conn is None or verdict is Verdict.WAIT:
            return
        elif verdict is Verdict.ASK:
            self._ask(conn, agent_id, run_id, decision.reason)
        elif verdict is Verdict.ADOPT:
            conn.owned.add((agent_id, run_id))
            self._spawn(conn.control(run_id, agent_id, wpb.CONTROL_ACTION_ADOPT))
            log.info("adopted a run", extra={"agentId": agent_id, "runId": run_id, "workerId": worker_id})
        elif verdict is Verdict.STUCK:
            self.forget(run_id)
            await self._on_stuck(agent_id, run_id, decision.reason, conn)
        elif sighting.status is not None:
            self._reconcile(conn, agent_id, run_id, desired, sighting.status)

    def _ask(self, conn: WorkerConnection, agent_id: str, run_id: str, reason: str) -> None:
        """Asks the worker about a run it does not report: ADOPT it if you hold it."""
        if run_id in self._asking:
            return
        self._asking.add(run_id)

        async def ask() -> None:
            try:
                ack = await conn.control(run_id, agent_id, wpb.CONTROL_ACTION_ADOPT)
                if ack.ok:
                    conn.owned.add((agent_id, run_id))  # its reports were late: it holds the run, and goes on
                    log.info("a run its worker did not report was there", extra={"runId": run_id})
                elif not unanswered(ack):
                    self.forget(run_id)
                    await self._on_lost(agent_id, run_id, reason)
            finally:
                self._asking.discard(run_id)

        self._spawn(ask())

    def _reconcile(
        self,
        conn: WorkerConnection,
        agent_id: str,
        run_id: str,
        desired: LifecycleState,
        status: wpb.RunStatus,
    ) -> None:
        action: wpb.ControlAction.ValueType | None = None
        if desired == LifecycleState.PAUSED and status.state == wpb.RUN_STATE_RUNNING:
            action = wpb.CONTROL_ACTION_PAUSE
        elif (
            desired in (LifecycleState.EXECUTING, LifecycleState.WAITING)
            and status.state == wpb.RUN_STATE_PAUSED
        ):
            action = wpb.CONTROL_ACTION_RESUME
        elif (
            desired in (LifecycleState.KILLED, LifecycleState.FAILED, LifecycleState.COMPLETED)
            and status.state in ALIVE_RUN_STATES
        ):
            action = wpb.CONTROL_ACTION_KILL
        if action is not None and not conn.awaiting(run_id, action):
            self._spawn(conn.control(run_id, agent_id, action, reason="reconcile"))
