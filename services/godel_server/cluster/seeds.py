"""Defaults a database gets once: the first start of the cluster service on it creates them, later
starts leave them as the API made them (changed, disabled or deleted)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.cluster.models import SeedRow
from godel_server.runtime.events import utcnow


async def first_time(session: AsyncSession, name: str) -> bool:
    """True once per database and `name` (in the caller's transaction, which then creates them)."""
    if await session.get(SeedRow, name, with_for_update=True) is not None:
        return False
    session.add(SeedRow(name=name, created_at=utcnow()))
    await session.flush()
    return True
