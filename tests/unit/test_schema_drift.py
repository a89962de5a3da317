"""The team and cluster services' migrations create exactly the tables their models describe (no
drift)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from godel_server.cluster.models import Base as ClusterBase
from godel_server.cluster.service import ClusterService
from godel_server.runtime.db import Database
from godel_server.runtime.host import Service
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.tables import runtime_metadata
from godel_server.team.models import Base
from godel_server.team.service import TeamService


@pytest.mark.parametrize(
    ("service", "metadata"), [(TeamService, Base.metadata), (ClusterService, ClusterBase.metadata)]
)
def test_migrations_match_the_models(tmp_path: Path, service: type[Service], metadata: MetaData) -> None:
    async def diff() -> list[Any]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
        try:
            await upgrade(db, service.migrations)
            async with db.engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await db.close()

    # Tables of other metadata (outbox, processed_events, dead_letters, alembic_version) and their
    # indexes show up as removals.
    changes = [
        c
        for c in asyncio.run(diff())
        if c[0] != "remove_table"
        and not (c[0] == "remove_index" and c[1].table.name in runtime_metadata.tables)
    ]
    assert changes == []
