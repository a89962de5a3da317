"""The team service's migrations create exactly the tables its models describe (no drift)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from godel_server.runtime.db import Database
from godel_server.runtime.migrations import upgrade
from godel_server.team.models import Base
from godel_server.team.service import TeamService


def test_team_migrations_match_the_models(tmp_path: Path) -> None:
    async def diff() -> list[Any]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'team.db'}")
        try:
            await upgrade(db, TeamService.migrations)
            async with db.engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await db.close()

    # Tables of other metadata (outbox, processed_events, alembic_version) show up as removals.
    changes = [c for c in asyncio.run(diff()) if c[0] != "remove_table"]
    assert changes == []
