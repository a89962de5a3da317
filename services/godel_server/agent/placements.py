"""Storage of placements (agents created through this cluster that run on a peer): every SQL of the
federation part of the agent service lives here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.agent.lifecycle import LIVE
from godel_server.agent.models import AgentRow, PlacementRow, ReplicaRow
from godel_server.runtime.statuses import LifecycleState

# The states a placement's events are still followed in (the agent may still change).
FOLLOWED = (*LIVE, LifecycleState.FAILED)


class PlacementRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, agent_id: str) -> PlacementRow | None:
        return await self._session.get(PlacementRow, agent_id, populate_existing=True)

    async def by_request_id(self, request_id: str) -> PlacementRow | None:
        return await self._session.scalar(select(PlacementRow).where(PlacementRow.request_id == request_id))

    async def add(self, row: PlacementRow) -> None:
        self._session.add(row)
        await self._session.flush()

    async def delete(self, agent_id: str) -> None:
        await self._session.execute(delete(PlacementRow).where(PlacementRow.agent_id == agent_id))

    async def not_started_on(self, cluster: str) -> Sequence[PlacementRow]:
        """The placements on `cluster` whose agent has not started (as far as its events tell)."""
        return (
            await self._session.scalars(
                select(PlacementRow).where(
                    PlacementRow.cluster == cluster, PlacementRow.state == LifecycleState.INITIALIZING
                )
            )
        ).all()

    async def followed(self) -> Sequence[tuple[str, str, int]]:
        """(agent id, cluster, last copied sequence) of every placement whose events are followed."""
        rows = await self._session.execute(
            select(PlacementRow.agent_id, PlacementRow.cluster, PlacementRow.event_sequence).where(
                PlacementRow.state.in_(FOLLOWED)
            )
        )
        return rows.all()

    async def with_stale_copies(self) -> Sequence[PlacementRow]:
        """Placements moved away from clusters that may still hold a copy of the agent."""
        rows = (await self._session.scalars(select(PlacementRow))).all()
        return [r for r in rows if r.replaced_from]

    async def live_replicas(self, now: datetime) -> list[str]:
        """Ids of the agent-service replicas whose lease holds, sorted."""
        ids = await self._session.scalars(select(ReplicaRow.id).where(ReplicaRow.lease_until > now))
        return sorted(ids.all())

    async def current_agents(self) -> int:
        """Agents of this cluster that are not finished (what it reports to its registries)."""
        return int(
            await self._session.scalar(
                select(func.count())
                .select_from(AgentRow)
                .where(
                    or_(
                        AgentRow.lifecycle_state.in_(LIVE),
                        (AgentRow.lifecycle_state == LifecycleState.FAILED)
                        & AgentRow.next_attempt_at.is_not(None),
                    )
                )
            )
            or 0
        )
