"""The leases by which the replicas of one service know each other: each replica renews its row
(id, address, started_at, lease_until) in the service's replica table; a replica whose lease
lapsed is dead, and what it owned moves to a live one. The agent service (agents) and the team
service (teams and workflows) each have such a table."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.sqltypes import UtcDateTime


class ReplicaColumns:
    """The columns of a replica table (a mixin of the service's model)."""

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[datetime] = mapped_column(UtcDateTime)


class ReplicaLease:
    def __init__(
        self, db: Database, model: type[ReplicaColumns], replica_id: str, address: str, lease_seconds: float
    ) -> None:
        self._db = db
        self._model = model
        self.replica_id = replica_id
        self._address = address
        self.lease_seconds = lease_seconds

    @property
    def renew_interval(self) -> float:
        """How often to renew: four times per lease, so a busy moment does not lose it."""
        return max(0.2, self.lease_seconds / 4)

    async def renew(self) -> None:
        now = utcnow()
        until = now + timedelta(seconds=self.lease_seconds)
        model = self._model
        async with self._db.session() as session:
            result = await session.execute(
                update(model).where(model.id == self.replica_id).values(lease_until=until)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                replica = model()
                replica.id, replica.address = self.replica_id, self._address
                replica.started_at, replica.lease_until = now, until
                session.add(replica)

    async def release(self) -> None:
        """Ends the lease now, so that other replicas take over without waiting."""
        model = self._model
        async with self._db.session() as session:
            await session.execute(
                update(model).where(model.id == self.replica_id).values(lease_until=utcnow())
            )

    def live(self, now: datetime | None = None) -> Select[str]:
        """The ids of the replicas whose lease holds (a subquery)."""
        model = self._model
        return select(model.id).where(model.lease_until > (now or utcnow()))
