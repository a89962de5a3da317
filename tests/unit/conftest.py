"""Fixtures of the team-service unit tests: a migrated SQLite database and its outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from godel.v1 import event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.tables import outbox
from godel_server.team.service import TeamService


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A team-service database (SQLite, all migrations applied)."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/team.db")
    await upgrade(database, TeamService.migrations)
    yield database
    await database.close()


async def outbox_events(db: Database) -> list[event_pb2.Event]:
    """Every event published so far (EventPublisher(None) leaves them in the outbox)."""
    async with db.reader() as session:
        values = (await session.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars().all()
    return [event_pb2.Event.FromString(v) for v in values]
