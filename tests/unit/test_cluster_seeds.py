"""Defaults the cluster service seeds once per database (cluster/seeds.py), on SQLite; on
PostgreSQL with replicas starting at once: tests/integration/test_migration_lock.py."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, select

from godel_server.cluster.alerts.store import AlertStore
from godel_server.cluster.models import AlertRuleRow
from godel_server.cluster.seeds import first_time
from godel_server.cluster.service import ClusterService
from tests.unit.conftest import migrated


async def test_a_seed_is_planted_once(tmp_path: Path) -> None:
    async with migrated(tmp_path / "cluster.db", ClusterService.migrations) as db:
        async with db.session() as session:
            assert await first_time(session, "defaults")
        async with db.session() as session:
            assert not await first_time(session, "defaults")
            assert await first_time(session, "other")


async def test_deleted_defaults_stay_deleted(tmp_path: Path) -> None:
    async with migrated(tmp_path / "cluster.db", ClusterService.migrations) as db:
        store = AlertStore(db)
        await store.ensure_defaults()
        async with db.session() as session:
            assert (await session.scalars(select(AlertRuleRow.name))).all()
            await session.execute(delete(AlertRuleRow))
        await store.ensure_defaults()  # a later start
        async with db.reader() as session:
            assert (await session.scalars(select(AlertRuleRow.name))).all() == []
