"""Which agent-service replica owns which agents: each replica renews a lease in `agent_replicas`;
agents of a replica whose lease lapsed are claimed by a live one (failover)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.agent.lifecycle import LIVE
from godel_server.agent.models import AgentRow, ReplicaRow
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.replicas import ReplicaLease
from godel_server.runtime.statuses import LifecycleState

# An agent without an owner for this long lost its run request somewhere: any replica takes it.
UNOWNED_GRACE = timedelta(seconds=30)


class ReplicaLeases(ReplicaLease):
    def __init__(self, db: Database, replica_id: str, address: str, lease_seconds: float) -> None:
        super().__init__(db, ReplicaRow, replica_id, address, lease_seconds)

    async def claim_orphans(self) -> list[str]:
        """Takes over the live agents of replicas whose lease lapsed; returns their ids."""
        now = utcnow()
        live = self.live(now)
        needs_owner = or_(
            AgentRow.lifecycle_state.in_(LIVE),
            and_(AgentRow.lifecycle_state == LifecycleState.FAILED, AgentRow.next_attempt_at.is_not(None)),
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
        return claimed

    async def claim(self, session: AsyncSession, agent_id: str) -> AgentRow | None:
        """Takes ownership of an agent whose run was requested (inside the caller's transaction,
        which holds the row's lock from then on); returns the agent as claimed, None when another
        live replica owns it or it needs no run. No version bump: the owner is not a change of
        the agent."""
        live = self.live()
        statement = (
            update(AgentRow)
            .where(
                AgentRow.id == agent_id,
                AgentRow.run_id.is_(None),
                AgentRow.lifecycle_state.in_((LifecycleState.INITIALIZING, LifecycleState.FAILED)),
                or_(AgentRow.owner.is_(None), AgentRow.owner == self.replica_id, AgentRow.owner.not_in(live)),
            )
            .values(owner=self.replica_id)
            .returning(AgentRow)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await session.scalars(statement)).one_or_none()
