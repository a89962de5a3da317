"""Fixtures of the unit tests: migrated SQLite databases of the team, agent and event services,
their outbox, and owned teams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from godel.v1 import event_pb2
from godel_server.agent.service import AgentService
from godel_server.event.service import EventService
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.ownership import Owner
from godel_server.runtime.tables import outbox
from godel_server.team.models import TeamRow
from godel_server.team.service import TeamService


@asynccontextmanager
async def migrated(path: Path, migrations: Path) -> AsyncIterator[Database]:
    """A SQLite database at `path` with a service's migrations applied, closed on exit."""
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(database, migrations)
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A team-service database (SQLite, all migrations applied)."""
    async with migrated(tmp_path / "team.db", TeamService.migrations) as database:
        yield database


@pytest.fixture
async def agent_db(tmp_path: Path) -> AsyncIterator[Database]:
    """An agent-service database (SQLite, all migrations applied)."""
    async with migrated(tmp_path / "agent.db", AgentService.migrations) as database:
        yield database


@pytest.fixture
async def event_db(tmp_path: Path) -> AsyncIterator[Database]:
    """An event-service database (SQLite, all migrations applied)."""
    async with migrated(tmp_path / "event.db", EventService.migrations) as database:
        yield database


async def add_team(db: Database, team_id: str, owner: Owner) -> None:
    """A team of the team service owned by `owner` (a parallel team that never started)."""
    now = utcnow()
    async with db.session() as session:
        session.add(
            TeamRow(
                id=team_id,
                name="t",
                execution_strategy="parallel",
                user_id=owner.user_id,
                user_team_id=owner.team_id,
                created_at=now,
                updated_at=now,
            )
        )


async def outbox_events(db: Database) -> list[event_pb2.Event]:
    """Every event published so far (EventPublisher(None) leaves them in the outbox)."""
    async with db.reader() as session:
        values = (await session.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars().all()
    return [event_pb2.Event.FromString(v) for v in values]
