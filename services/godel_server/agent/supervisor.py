"""Supervision of the runs a replica owns: runs whose worker vanished, that no worker reports any
more (stuck) or that make no progress are declared lost; runs found on a worker after a failover
are adopted; the desired state in the database (paused, killed) is pushed to the worker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC
from typing import Any

from sqlalchemy import select

from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.models import AgentRow
from godel_server.agent.workers import ALIVE_RUN_STATES, WorkerConnection, WorkerRegistry
from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow

log = logging.getLogger(__name__)

PASS_SECONDS = 1.0

# (agent id, run id, why, the worker still holding the run or None)
OnLost = Callable[[str, str, str, WorkerConnection | None], Awaitable[None]]


class RunSupervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: WorkerRegistry,
        *,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        on_lost: OnLost,
    ) -> None:
        self._settings = settings
        self._db = db
        self._registry = registry
        self._spawn = spawn
        self._on_lost = on_lost
        self.replica_id = settings.instance_id
        # Runs whose updates come to this replica (assigned here, or adopted).
        self.adopted: set[str] = set()
        # Runs missing from their worker, with the monotonic time they were first missed.
        self._missing: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PASS_SECONDS)
            try:
                await self.check()
            except Exception:
                log.exception("supervision pass failed")

    def forget(self, run_id: str) -> None:
        self._missing.pop(run_id, None)

    async def check(self) -> None:
        async with self._db.reader() as session:
            rows = (
                await session.execute(
                    select(AgentRow.id, AgentRow.run_id, AgentRow.worker_id, AgentRow.lifecycle_state).where(
                        AgentRow.owner == self.replica_id, AgentRow.run_id.is_not(None)
                    )
                )
            ).all()
        now = time.monotonic()
        current: set[str] = set()
        for agent_id, run_id, worker_id, desired in rows:
            if run_id is None:
                continue
            current.add(run_id)
            await self._check_run(agent_id, run_id, worker_id, desired, now)
        for run_id in list(self._missing):
            if run_id not in current:
                del self._missing[run_id]

    async def _check_run(
        self, agent_id: str, run_id: str, worker_id: str | None, desired: str, now: float
    ) -> None:
        s = self._settings
        conn = self._registry.get(worker_id)
        if conn is None or not conn.has_run(run_id):
            first = self._missing.setdefault(run_id, now)
            # A connected worker that never mentioned the run gets the heartbeat timeout.
            limit = s.worker_lost_grace if conn is None else max(s.worker_lost_grace, s.heartbeat_timeout)
            if now - first > limit:
                why = f"worker {worker_id} lost" if conn is None else f"worker {worker_id} no longer runs it"
                self.forget(run_id)
                await self._on_lost(agent_id, run_id, why, None)
            return
        self.forget(run_id)
        if run_id not in self.adopted:
            self.adopted.add(run_id)
            self._spawn(conn.control(run_id, agent_id, wpb.CONTROL_ACTION_ADOPT))
            log.info("adopted a run", extra={"agentId": agent_id, "runId": run_id, "workerId": worker_id})
        status = conn.runs[run_id]
        if now - conn.seen.get(run_id, now) > s.heartbeat_timeout:
            await self._on_lost(agent_id, run_id, f"stuck: no heartbeat for {s.heartbeat_timeout:.0f}s", conn)
            return
        if (
            s.progress_timeout > 0
            and status.state == wpb.RUN_STATE_RUNNING
            and status.HasField("last_progress")
            and (utcnow() - status.last_progress.ToDatetime(tzinfo=UTC)).total_seconds() > s.progress_timeout
        ):
            await self._on_lost(agent_id, run_id, f"stuck: no progress for {s.progress_timeout:.0f}s", conn)
            return
        self._reconcile(conn, agent_id, run_id, desired, status)

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
