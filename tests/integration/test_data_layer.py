"""The storage layer on both backends: the embedded default (SQLite) and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from godel.v1 import event_pb2
from godel_deploy.postgres import PostgresServer
from godel_server.agent.models import AgentRow
from godel_server.agent.repository import AgentQuery, AgentRepository
from godel_server.agent.service import AgentService
from godel_server.cluster.service import ClusterService
from godel_server.event.service import EventService
from godel_server.event.store import EventFilter, EventStore
from godel_server.runtime.db import Database, ensure_postgres_database
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.host import Service
from godel_server.runtime.migrations import current_revision, downgrade, head_revision, upgrade
from godel_server.runtime.outbox import enqueue
from godel_server.runtime.tables import outbox
from godel_server.team.service import TeamService

SERVICES = (AgentService, EventService, ClusterService, TeamService)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.url(f"dl_{uuid.uuid4().hex[:10]}")
    await ensure_postgres_database(url)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.close()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.role)
async def test_migrations_go_up_down_and_up_again(db: Database, service: type[Service]) -> None:
    head = head_revision(service.migrations)
    assert head is not None
    await upgrade(db, service.migrations)
    assert await current_revision(db) == head
    await downgrade(db, service.migrations)
    assert await current_revision(db) is None
    await upgrade(db, service.migrations)
    assert await current_revision(db) == head


def _agent(i: int, *, label: str, status: str = "pending", model: str = "m") -> AgentRow:
    now = utcnow() + timedelta(milliseconds=i)
    return AgentRow(
        id=str(uuid.uuid4()),
        model=model,
        task=f"task {i}",
        config={},
        status=status,
        lifecycle_state="initializing",
        commits=[],
        spawned_at=now,
        updated_at=now,
        label=label,
        meta={},
        runtime_seconds=0,
        retry_count=0,
        max_retries=3,
        budget_consumed=0.0,
        version=1,
    )


async def test_agent_repository_filters_and_keyset_pages(db: Database) -> None:
    await upgrade(db, AgentService.migrations)
    async with db.session() as session:
        repo = AgentRepository(session)
        for i in range(9):
            await repo.add(_agent(i, label="a", status="running" if i % 3 == 0 else "pending"))
        await repo.add(_agent(100, label="b", model="other"))
    async with db.reader() as session:
        repo = AgentRepository(session)
        running = await repo.find(AgentQuery(statuses=("running",), label="a"), limit=50, after=None)
        assert [r.task for r in running] == ["task 6", "task 3", "task 0"]
        pages: list[str] = []
        after = None
        while True:
            rows = await repo.find(AgentQuery(label="a"), limit=4, after=after)
            pages += [r.task for r in rows]
            if len(rows) < 4:
                break
            after = (rows[-1].spawned_at, rows[-1].id)
        assert pages == [f"task {i}" for i in reversed(range(9))]
        assert [r.model for r in await repo.find(AgentQuery(model="other"), limit=5, after=None)] == ["other"]


async def test_request_id_is_unique(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    await upgrade(db, AgentService.migrations)
    first, second = _agent(1, label="x"), _agent(2, label="x")
    first.request_id = second.request_id = "same"
    async with db.session() as session:
        await AgentRepository(session).add(first)
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            await AgentRepository(session).add(second)
    async with db.reader() as session:
        assert (await AgentRepository(session).by_request_id("same")).id == first.id  # type: ignore[union-attr]


async def test_event_store_sequences_dedupes_and_filters(db: Database) -> None:
    await upgrade(db, EventService.migrations)
    agent_id = str(uuid.uuid4())
    events = [
        new_event("agent:spawn", {"i": 1}, partition_key=agent_id, component="t", agent_id=agent_id),
        new_event("agent:start", {"i": 2}, partition_key=agent_id, component="t", agent_id=agent_id),
        new_event("workflow:step:complete", {"i": 3}, partition_key="w", component="t", workflow_id="w1"),
    ]
    async with db.session() as session:
        stored = await EventStore(session).append(events)
    assert [e.sequence for e in stored] == [1, 2, 3]
    async with db.session() as session:
        again = await EventStore(session).append(
            [events[1], new_event("team:start", {}, partition_key="t", component="t")]
        )
    assert [e.type for e in again] == ["team:start"] and again[0].sequence == 4
    async with db.reader() as session:
        store = EventStore(session)
        assert [e.type for e in await store.query(EventFilter(types=("agent:*",)), limit=10)] == [
            "agent:spawn",
            "agent:start",
        ]
        assert [e.type for e in await store.query(EventFilter(types=("workflow:step:*",)), limit=10)] == [
            "workflow:step:complete"
        ]
        assert [e.sequence for e in await store.query(EventFilter(), limit=2, after_sequence=2)] == [3, 4]
        newest = await store.query(EventFilter(agent_id=agent_id), limit=10, descending=True)
        assert [e.type for e in newest] == ["agent:start", "agent:spawn"]
        got = await store.get(events[0].id)
        assert got is not None and got.payload["i"] == 1 and got.sequence == 1
        assert await store.last_sequence() == 4


async def test_outbox_rows_commit_or_roll_back_with_the_state_change(db: Database) -> None:
    await upgrade(db, AgentService.migrations)
    event = new_event("agent:spawn", {}, partition_key="a", component="t")
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await AgentRepository(session).add(_agent(1, label="rollback"))
            await enqueue(session, [event])
            raise RuntimeError("handler failed after writing")
    async with db.reader() as session:
        assert (await session.execute(select(outbox))).all() == []
        assert await AgentRepository(session).find(AgentQuery(label="rollback"), limit=5, after=None) == []
    async with db.session() as session:
        await enqueue(session, [event])
    async with db.reader() as session:
        row = (await session.execute(select(outbox))).mappings().one()
    assert row["topic"] == "godel.agent.events" and row["key"] == "a"
    decoded = event_pb2.Event()
    decoded.ParseFromString(row["value"])
    assert decoded.id == event.id
