"""The federation metrics of spec §9.1 that the cluster service exports from its registry (each
cluster's health score and agents), and the alerts firing per severity."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.cluster.alerts.kinds import AlertState, Severity
from godel_server.cluster.models import AlertRow, ClusterRow
from godel_server.runtime.db_gauges import GaugeFamily, GaugeSpec, Readings, total

HEALTH = GaugeFamily(
    "godel_cluster_health_score", "Health score of each registered cluster, 0-100", ("cluster",)
)
AGENTS = GaugeFamily("godel_cluster_agents", "Agents each registered cluster reports", ("cluster",))
FIRING = GaugeFamily("godel_alerts_firing", "Alerts firing now, per severity", ("severity",))


async def read(session: AsyncSession) -> Readings:
    clusters = (
        await session.execute(select(ClusterRow.name, ClusterRow.health_score, ClusterRow.current_agents))
    ).all()
    firing = await session.execute(
        select(AlertRow.severity, func.count())
        .where(AlertRow.state == AlertState.FIRING)
        .group_by(AlertRow.severity)
    )
    return {
        HEALTH.name: {(name,): float(score) for name, score, _ in clusters},
        AGENTS.name: {(name,): float(agents) for name, _, agents in clusters},
        FIRING.name: {**{(s.value,): 0.0 for s in Severity}, **total(((str(s),), n) for s, n in firing)},
    }


GAUGES = GaugeSpec((HEALTH, AGENTS, FIRING), read)
