"""Agent storage queries (spec §4.1 AgentRegistry: register, find, get, unregister)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.agent.models import AgentRow


@dataclass(frozen=True)
class AgentQuery:
    statuses: tuple[str, ...] = ()
    lifecycle_states: tuple[str, ...] = ()
    team_id: str = ""
    model: str = ""
    label: str = ""
    spawned_after: datetime | None = None
    spawned_before: datetime | None = None


class AgentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, row: AgentRow) -> None:
        self._session.add(row)
        await self._session.flush()

    async def get(self, agent_id: str) -> AgentRow | None:
        return await self._session.get(AgentRow, agent_id)

    async def by_request_id(self, request_id: str) -> AgentRow | None:
        return await self._session.scalar(select(AgentRow).where(AgentRow.request_id == request_id))

    async def delete(self, agent_id: str) -> None:
        await self._session.execute(delete(AgentRow).where(AgentRow.id == agent_id))

    async def find(
        self, query: AgentQuery, *, limit: int, after: tuple[datetime, str] | None
    ) -> list[AgentRow]:
        """Newest first; `after` is the (spawned_at, id) of the last row of the previous page."""
        stmt = select(AgentRow)
        if query.statuses:
            stmt = stmt.where(AgentRow.status.in_(query.statuses))
        if query.lifecycle_states:
            stmt = stmt.where(AgentRow.lifecycle_state.in_(query.lifecycle_states))
        if query.team_id:
            stmt = stmt.where(AgentRow.team_id == query.team_id)
        if query.model:
            stmt = stmt.where(AgentRow.model == query.model)
        if query.label:
            stmt = stmt.where(AgentRow.label == query.label)
        if query.spawned_after:
            stmt = stmt.where(AgentRow.spawned_at >= query.spawned_after)
        if query.spawned_before:
            stmt = stmt.where(AgentRow.spawned_at < query.spawned_before)
        if after is not None:
            spawned_at, last_id = after
            stmt = stmt.where(
                or_(
                    AgentRow.spawned_at < spawned_at,
                    and_(AgentRow.spawned_at == spawned_at, AgentRow.id < last_id),
                )
            )
        stmt = stmt.order_by(AgentRow.spawned_at.desc(), AgentRow.id.desc()).limit(limit)
        return list((await self._session.scalars(stmt)).all())
