"""Session affinity of the load balancer (spec §4.2 getAffinity/setAffinity/clearAffinity): a session
bound to a cluster until its binding expires; every use extends it. Kept in the cluster database, so
bindings survive a restart and are shared by registry replicas."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from godel_server.cluster.models import AffinityRow
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow


class AffinityStore:
    def __init__(self, db: Database, default_ttl: float) -> None:
        self._db = db
        self.default_ttl = default_ttl

    async def set(self, session_id: str, cluster_id: str, ttl: float | None = None) -> AffinityRow:
        """Binds the session to the cluster for `ttl` seconds (default: the registry's)."""
        row = AffinityRow(
            session_id=session_id,
            cluster_id=cluster_id,
            expires_at=utcnow() + timedelta(seconds=ttl or self.default_ttl),
        )
        async with self._db.session() as session:
            await session.merge(row)
        return row

    async def get(self, session_id: str) -> AffinityRow | None:
        """The session's binding; None when it has none or it expired."""
        async with self._db.reader() as session:
            row = await session.get(AffinityRow, session_id)
        if row is None or row.expires_at <= utcnow():
            return None
        return row

    async def clear(self, session_id: str) -> None:
        async with self._db.session() as session:
            await session.execute(delete(AffinityRow).where(AffinityRow.session_id == session_id))

    async def purge_expired(self) -> None:
        async with self._db.session() as session:
            await session.execute(delete(AffinityRow).where(AffinityRow.expires_at <= utcnow()))
