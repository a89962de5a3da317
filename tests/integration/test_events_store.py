"""The event store's schema on both backends: the PostgreSQL events table is partitioned by day with
partitions ahead, retention drops old partitions (PostgreSQL) or rows (SQLite) but never the
newest event, the migrations go down and up again with the data, and queries filter and order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from godel.v1 import event_pb2
from godel_deploy.postgres import PostgresServer
from godel_server.event import partitions
from godel_server.event.maintenance import EventMaintenance
from godel_server.event.models import EventRow
from godel_server.event.service import EventService
from godel_server.event.store import EventFilter, EventStore
from godel_server.event.visibility import EVERY_EVENT
from godel_server.runtime.db import Database, ensure_postgres_database
from godel_server.runtime.migrations import current_revision, downgrade, head_revision, upgrade
from tests.fakes.events import of_type

MIGRATIONS = EventService.migrations


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.url(f"ev_{uuid.uuid4().hex[:10]}")
        await ensure_postgres_database(url)
    database = Database(url)
    await upgrade(database, MIGRATIONS)
    yield database
    await database.close()


def _today() -> date:
    return datetime.now(UTC).date()


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _event(kind: str, *, agent_id: str = "", component: str = "test") -> event_pb2.Event:
    return of_type(kind, {"n": 1}, partition_key=agent_id or "k", component=component, agent_id=agent_id)


async def _append(db: Database, events: list[event_pb2.Event]) -> list[event_pb2.Event]:
    async with db.session() as session:
        return await EventStore(session).append(events)


async def test_postgres_events_table_is_partitioned_by_day_with_partitions_ahead(
    postgres: PostgresServer,
) -> None:
    # Dates are read before and after each step: across a UTC midnight they differ, and the
    # checks hold for whichever day the step saw.
    url = postgres.url(f"ev_{uuid.uuid4().hex[:10]}")
    await ensure_postgres_database(url)
    db = Database(url)
    try:
        first_day = _today()
        await upgrade(db, MIGRATIONS)
        last_day = _today()
        async with db.session() as session:
            assert await partitions.is_partitioned(session)
            names = await partitions.partitions(session)
            indexes = {
                r[0]
                for r in await session.execute(
                    text("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")
                )
            }
        # The migration's day, and PARTITIONS_AHEAD days after it, whichever day it ran on.
        for day in _days(last_day, first_day + timedelta(days=partitions.PARTITIONS_AHEAD)):
            assert partitions.day_partition(day) in names, (day, names)
        assert {
            "idx_events_type",
            "idx_events_timestamp",
            "idx_events_correlation_id",
            "idx_events_agent_id",
            "idx_events_team_id",
            "idx_events_trace_id",
        } <= indexes
        first_day = _today()
        stored = await _append(db, [_event("agent:start"), _event("agent:stop")])
        last_day = _today()
        assert [e.sequence for e in stored] == [1, 2]
        assert [e.id for e in await _append(db, stored)] == [], "stored once: dedupe by id"
        async with db.session() as session:
            in_their_days = [
                await session.scalar(text(f"SELECT count(*) FROM {partitions.day_partition(day)}"))
                for day in _days(first_day, last_day)
            ]
        assert sum(in_their_days) == 2, "the day partition of the day they were stored"
    finally:
        await db.close()


async def _age(db: Database, sequences: list[int], days: int) -> None:
    """Moves events back in time (on PostgreSQL the row moves to the old-rows partition)."""
    async with db.session() as session:
        await session.execute(
            update(EventRow)
            .where(EventRow.sequence_number.in_(sequences))
            .values(stored_at=datetime.now(UTC) - timedelta(days=days))
        )


async def test_retention_removes_old_events_but_never_the_newest(db: Database) -> None:
    stored = await _append(db, [_event("agent:start") for _ in range(4)])
    await _age(db, [e.sequence for e in stored[:3]], days=40)
    async with db.session() as session:
        partition_names = await partitions.partitions(session) if not db.is_sqlite else []
    if not db.is_sqlite:
        # Rows from before the partitioning migration day live in events_upto_<day>; move the
        # legacy bound back so it is old enough to be dropped, as it would be after 40 days.
        legacy = next(n for n in partition_names if n.startswith("events_upto_"))
        old = (datetime.now(UTC) - timedelta(days=39)).date()
        async with db.session() as session:
            await session.execute(text(f"ALTER TABLE events DETACH PARTITION {legacy}"))
            await session.execute(text(f"ALTER TABLE {legacy} RENAME TO events_upto_{old:%Y%m%d}"))
            await session.execute(
                text(
                    f"ALTER TABLE events ATTACH PARTITION events_upto_{old:%Y%m%d} FOR VALUES FROM (MINVALUE) TO ('{old:%Y-%m-%d}')"
                )
            )
    # Retention off: nothing goes.
    assert not (await EventMaintenance(db, 0).run_once()).get("deleted")
    report = await EventMaintenance(db, 30).run_once()
    assert report.get("deleted") == 3 or report.get("dropped"), report
    async with db.reader() as session:
        left = await EventStore(session).query(EventFilter(), audience=EVERY_EVENT, limit=10)
        assert [e.sequence for e in left] == [4]
        assert await EventStore(session).last_sequence() == 4

    # Every event old: the newest one stays, so numbering continues after it.
    if db.is_sqlite:
        await _age(db, [4], days=40)
        await EventMaintenance(db, 30).run_once()
    else:  # as if the clock were 40 days on: every partition up to the newest event's is expired
        async with db.session() as session:
            stored_at = await session.scalar(select(EventRow.stored_at).where(EventRow.sequence_number == 4))
            assert stored_at is not None
            newest = stored_at.astimezone(UTC).date()
            # Two (empty) days before the newest event's: they expire, its own day does not.
            older = [newest - timedelta(days=2), newest - timedelta(days=1)]
            await partitions.ensure_ahead(session, older[0], ahead=1)
            dropped = await partitions.drop_expired(session, newest + timedelta(days=40))
            assert sorted(dropped) == [partitions.day_partition(day) for day in older]
            assert partitions.day_partition(newest) in await partitions.partitions(session)
    async with db.reader() as session:
        assert await EventStore(session).last_sequence() == 4
    assert [e.sequence for e in await _append(db, [_event("agent:start")])] == [5]


async def test_migrations_go_down_and_up_again_keeping_events(db: Database) -> None:
    stored = await _append(db, [_event("agent:start"), _event("team:create")])
    assert await current_revision(db) == head_revision(MIGRATIONS)
    await downgrade(db, MIGRATIONS, "0002")
    async with db.reader() as session:  # the table of 0002 (no owner columns): read it raw
        ids = (await session.execute(text("SELECT id FROM events ORDER BY sequence_number"))).scalars()
        assert list(ids) == [e.id for e in stored]
    await upgrade(db, MIGRATIONS)
    async with db.reader() as session:
        assert [
            e.id for e in await EventStore(session).query(EventFilter(), audience=EVERY_EVENT, limit=10)
        ] == [e.id for e in stored]
    await downgrade(db, MIGRATIONS, "base")
    assert await current_revision(db) is None


async def test_query_filters_and_orders(db: Database) -> None:
    agent, corr, trace = str(uuid.uuid4()), uuid.uuid4().hex, uuid.uuid4().hex
    events = [
        _event("workflow:step:start", agent_id=agent),
        _event("workflow:step:complete", agent_id=agent),
        _event("workflow:complete"),
        _event("agent:spawn", component="agent-service"),
    ]
    events[1].metadata.correlation_id = corr
    events[2].metadata.trace_id = trace
    stored = await _append(db, events)
    async with db.reader() as session:
        store = EventStore(session)

        async def seqs(flt: EventFilter, **kw: object) -> list[int]:
            return [e.sequence for e in await store.query(flt, audience=EVERY_EVENT, limit=10, **kw)]  # type: ignore[arg-type]

        s = [e.sequence for e in stored]
        assert await seqs(EventFilter(types=("workflow:step:*",))) == s[:2]
        assert await seqs(EventFilter(types=("workflow:*",))) == s[:3]
        assert await seqs(EventFilter(agent_id=agent)) == s[:2]
        assert await seqs(EventFilter(correlation_id=corr)) == [s[1]]
        assert await seqs(EventFilter(trace_id=trace)) == [s[2]]
        assert await seqs(EventFilter(source_component="agent-service")) == [s[3]]
        assert await seqs(EventFilter(), descending=True) == s[::-1]
        future = datetime.now(UTC) + timedelta(hours=1)
        assert await seqs(EventFilter(start_time=future)) == []
        assert await seqs(EventFilter(end_time=future)) == s


async def test_appends_that_wait_for_the_numbering_lock_number_after_what_it_held(db: Database) -> None:
    """The second batch takes the lock while the first is stored but not committed: once it gets
    the lock it must see the first batch (its scan runs after the lock, with a fresh snapshot), so
    the numbers go on without a gap or a repeat, and an id of the first batch is not stored again."""
    await _append(db, [_event("agent:start")])
    first = [_event("agent:start"), _event("agent:start")]
    second = [first[1], _event("team:create")]  # one id already in the first batch
    holding, release = asyncio.Event(), asyncio.Event()

    async def append_first() -> list[event_pb2.Event]:
        async with db.session() as session:
            stored = await EventStore(session).append(first)
            holding.set()
            await release.wait()
        return stored

    async def append_second() -> list[event_pb2.Event]:
        await holding.wait()
        return await _append(db, second)

    one = asyncio.create_task(append_first())
    two = asyncio.create_task(append_second())
    await holding.wait()
    if not db.is_sqlite:  # SQLite queues writers in-process; PostgreSQL makes the second wait
        await asyncio.sleep(0.3)
        assert not two.done(), "the second batch did not wait for the numbering lock"
    release.set()
    stored_first, stored_second = await asyncio.wait_for(asyncio.gather(one, two), 30)
    assert [e.sequence for e in stored_first] == [2, 3]
    assert [(e.id, e.sequence) for e in stored_second] == [(second[1].id, 4)]
    async with db.reader() as session:
        rows = (await session.execute(select(EventRow.sequence_number, EventRow.id))).all()
    assert sorted(number for number, _ in rows) == [1, 2, 3, 4]
    assert len({event_id for _, event_id in rows}) == 4
