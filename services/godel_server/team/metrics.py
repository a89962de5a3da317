"""The team and queue metrics of spec §9.1 that the team service exports: teams created and per
status, the live members of each team that has not ended, the share of ended teams that completed,
and the tasks waiting in the queue per team (`godel_queue_depth`, which the autonomic loop of the
cluster service scales autoscaling teams on)."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.runtime.db_gauges import GaugeFamily, GaugeSpec, Readings, total
from godel_server.runtime.statuses import TaskStatus, TeamStatus
from godel_server.team.members import ENDED
from godel_server.team.models import MemberRow, TaskRow, TeamRow
from godel_server.team.teams.mapping import TERMINAL

# prometheus_client adds `_total` to a counter's name: this is spec §9.1's godel_teams_total.
TEAMS_CREATED = Counter("godel_teams", "Teams created")

BY_STATUS = GaugeFamily("godel_teams_by_status", "Teams stored, per status", ("status",))
TEAM_AGENTS = GaugeFamily("godel_team_agents", "Live members of each team that has not ended", ("team_id",))
COMPLETION_RATE = GaugeFamily(
    "godel_team_completion_rate", "Share of the ended teams (completed or failed) that completed, 0-1"
)
QUEUE_DEPTH = GaugeFamily(
    "godel_queue_depth",
    "Tasks waiting in the queue (pending), per team; team_id is empty for tasks of no team. Every "
    "team that has not ended has a series, 0 when nothing waits",
    ("team_id",),
)


async def read(session: AsyncSession) -> Readings:
    by_status = total(
        ((str(status),), count)
        for status, count in await session.execute(
            select(TeamRow.status, func.count()).group_by(TeamRow.status)
        )
    )
    open_teams = select(TeamRow.id).where(TeamRow.status.not_in(TERMINAL))
    live: dict[tuple[str, ...], float] = {
        (team_id,): 0.0 for team_id in (await session.scalars(open_teams)).all()
    }
    members = (
        select(MemberRow.team_id, func.count())
        .where(
            MemberRow.team_id.in_(open_teams),
            MemberRow.status.not_in(ENDED),
            MemberRow.superseded.is_(False),
        )
        .group_by(MemberRow.team_id)
    )
    team_agents = {**live, **total(((team_id or "",), n) for team_id, n in await session.execute(members))}
    waiting = (
        select(TaskRow.team_id, func.count())
        .where(TaskRow.status == TaskStatus.PENDING)
        .group_by(TaskRow.team_id)
    )
    depth = {**live, **total(((team_id or "",), n) for team_id, n in await session.execute(waiting))}
    completed = by_status.get((TeamStatus.COMPLETED.value,), 0.0)
    ended = completed + by_status.get((TeamStatus.FAILED.value,), 0.0)
    return {
        BY_STATUS.name: by_status,
        TEAM_AGENTS.name: team_agents,
        COMPLETION_RATE.name: {(): completed / ended if ended else 0.0},
        QUEUE_DEPTH.name: depth,
    }


GAUGES = GaugeSpec((BY_STATUS, TEAM_AGENTS, COMPLETION_RATE, QUEUE_DEPTH), read)
