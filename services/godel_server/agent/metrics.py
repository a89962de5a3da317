"""The agent metrics of spec §9.1 that the agent service exports, and the gauges the autonomic loop
of the cluster service watches: how many agents there are per status, what they cost, how long
they ran, and how long each executing agent has shown no sign of activity (a stuck agent)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.agent.models import AgentLogRow, AgentRow
from godel_server.runtime.db_gauges import GaugeFamily, GaugeSpec, Readings, total
from godel_server.runtime.events import utcnow
from godel_server.runtime.statuses import AgentStatus, LifecycleState

# prometheus_client adds `_total` to a counter's name: this is spec §9.1's godel_agents_total.
AGENTS_CREATED = Counter("godel_agents", "Agents created")
AGENT_DURATION = Histogram(
    "godel_agent_duration_seconds",
    "Time from spawn to end of the agents that ended (completed, failed or killed)",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
ENDINGS = frozenset({LifecycleState.COMPLETED, LifecycleState.FAILED, LifecycleState.KILLED})

ACTIVE = GaugeFamily("godel_agents_active", "Agents running now (status running)")
BY_STATUS = GaugeFamily("godel_agents_by_status", "Agents stored, per status", ("status",))
COST = GaugeFamily(
    "godel_agent_cost_dollars",
    "Spend of the stored agents in USD, from their token usage, per model",
    ("model",),
)
IDLE = GaugeFamily(
    "godel_agent_idle_seconds",
    "Seconds since each executing agent last showed activity (a log line, or the start of its run)",
    ("agent_id",),
)


def observe_end(row: AgentRow, state: LifecycleState, now: datetime) -> None:
    """Records an agent's duration when a transition ends it."""
    if state in ENDINGS and row.spawned_at is not None:
        AGENT_DURATION.labels(state.value).observe(max(0.0, (now - row.spawned_at).total_seconds()))


async def read(session: AsyncSession) -> Readings:
    by_status = total(
        ((str(status),), count)
        for status, count in (
            await session.execute(select(AgentRow.status, func.count()).group_by(AgentRow.status))
        )
    )
    cost = total(
        ((model,), spent or 0.0)
        for model, spent in await session.execute(
            select(AgentRow.model, func.sum(AgentRow.budget_consumed)).group_by(AgentRow.model)
        )
    )
    last_log = (
        select(AgentLogRow.time)
        .where(AgentLogRow.agent_id == AgentRow.id)
        .order_by(AgentLogRow.sequence.desc())
        .limit(1)
        .scalar_subquery()
    )
    now = utcnow()
    idle: dict[tuple[str, ...], float] = {}
    executing = select(AgentRow.id, AgentRow.run_started_at, last_log).where(
        AgentRow.lifecycle_state == LifecycleState.EXECUTING, AgentRow.run_started_at.is_not(None)
    )
    for agent_id, started, logged in await session.execute(executing):
        assert started is not None  # selected so
        last: datetime = started if logged is None or logged < started else logged
        idle[(agent_id,)] = max(0.0, (now - last).total_seconds())
    return {
        ACTIVE.name: {(): by_status.get((AgentStatus.RUNNING.value,), 0.0)},
        BY_STATUS.name: by_status,
        COST.name: cost,
        IDLE.name: idle,
    }


GAUGES = GaugeSpec((ACTIVE, BY_STATUS, COST, IDLE), read)
