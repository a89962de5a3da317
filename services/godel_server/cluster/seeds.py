"""Defaults a database gets once: the first start of the cluster service on it creates them, later
starts leave them as the API made them (changed, disabled or deleted)."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.cluster.models import SeedRow
from godel_server.runtime.events import utcnow


async def first_time(session: AsyncSession, name: str) -> bool:
    """True once per database and `name` (in the caller's transaction, which then creates them).
    One statement, so replicas starting together agree: the seed row of a concurrent transaction
    makes this one wait for it, then find the row (a read-then-insert let both insert, and the
    second replica's start failed on the primary key)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(SeedRow)
        .values(name=name, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(SeedRow.name)
    )
    return await session.scalar(statement) is not None
