"""The storage layer on both backends: the embedded default (SQLite) and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import delete, select, text, update
from sqlalchemy.event import listen

from godel.v1 import agent_events_pb2, agent_pb2, event_pb2
from godel_deploy.postgres import PostgresServer
from godel_server.__main__ import main as godel_server
from godel_server.agent.models import AgentRow
from godel_server.agent.repository import AgentQuery, AgentRepository
from godel_server.agent.service import AgentService
from godel_server.cluster.service import ClusterService
from godel_server.event.service import EventService
from godel_server.event.store import EventFilter, EventStore
from godel_server.event.visibility import EVERY_EVENT
from godel_server.runtime.db import Database, ReadOnlySessionError, ensure_postgres_database
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.host import Service
from godel_server.runtime.migrations import current_revision, downgrade, head_revision, upgrade
from godel_server.runtime.outbox import OutboxRelay, SendFailed, enqueue
from godel_server.runtime.ownership import EVERYTHING
from godel_server.runtime.statuses import AgentStatus
from godel_server.runtime.tables import outbox
from godel_server.team.service import TeamService
from tests.conftest import postgres_database
from tests.fakes.events import of_type
from tests.waits import wait_for_async

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


def test_godel_server_migrate_goes_up_and_down(
    tmp_path: Path,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As an operator runs it once, on PostgreSQL, where `up` also creates the database ...
    url = postgres.url(f"mig_{uuid.uuid4().hex[:10]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
    env["GODEL_TEAM_DATABASE_URL"] = url
    up = subprocess.run(
        [sys.executable, "-m", "godel_server", "migrate", "team", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    head = head_revision(TeamService.migrations)
    assert (up.returncode, up.stdout) == (0, f"team: database at revision {head}\n"), up.stderr
    assert asyncio.run(_revision(url)) == head
    # ... then every role, on SQLite, through the same entry point in this process.
    for service in SERVICES:
        role = service.role
        url = f"sqlite+aiosqlite:///{tmp_path / f'{role}.db'}"
        monkeypatch.setenv(f"GODEL_{role.upper()}_DATABASE_URL", url)
        head = head_revision(service.migrations)
        for argv, revision in ((["up"], head), (["down"], None), (["up", "0001"], "0001"), (["up"], head)):
            assert godel_server(["migrate", role, *argv]) == 0
            printed = capsys.readouterr().out
            assert printed == f"{role}: database at revision {revision or 'base'}\n", (argv, printed)
            assert asyncio.run(_revision(url)) == revision, argv
    with pytest.raises(SystemExit) as bad:
        godel_server(["migrate", "nope", "up"])
    assert bad.value.code == 2 and "invalid choice" in capsys.readouterr().err


async def _revision(url: str) -> str | None:
    database = Database(url)
    try:
        return await current_revision(database)
    finally:
        await database.close()


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
        running, token = await repo.find(
            AgentQuery(statuses=(AgentStatus.RUNNING,), label="a"), EVERYTHING, page_size=50, page_token=""
        )
        assert [r.task for r in running] == ["task 6", "task 3", "task 0"] and token == ""
        pages: list[str] = []
        token = ""
        while True:
            rows, token = await repo.find(AgentQuery(label="a"), EVERYTHING, page_size=4, page_token=token)
            pages += [r.task for r in rows]
            if not token:
                break
        assert pages == [f"task {i}" for i in reversed(range(9))]
        others, _ = await repo.find(AgentQuery(model="other"), EVERYTHING, page_size=5, page_token="")
        assert [r.model for r in others] == ["other"]


async def test_request_id_is_unique_per_user(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    await upgrade(db, AgentService.migrations)
    first, second, bobs = _agent(1, label="x"), _agent(2, label="x"), _agent(3, label="x")
    first.request_id = second.request_id = bobs.request_id = "same"
    first.user_id = second.user_id = "alice"
    bobs.user_id = "bob"
    async with db.session() as session:
        await AgentRepository(session).add(first)
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            await AgentRepository(session).add(second)
    async with db.session() as session:
        await AgentRepository(session).add(bobs)
    async with db.reader() as session:
        repo = AgentRepository(session)
        assert (await repo.by_request_id("same", "alice")).id == first.id  # type: ignore[union-attr]
        assert (await repo.by_request_id("same", "bob")).id == bobs.id  # type: ignore[union-attr]
        assert await repo.by_request_id("same", "carol") is None


async def test_event_store_sequences_dedupes_and_filters(db: Database) -> None:
    await upgrade(db, EventService.migrations)
    agent_id = str(uuid.uuid4())
    spawned = agent_events_pb2.AgentSpawned(agent=agent_pb2.Agent(id=agent_id, task="stored"))
    events = [
        new_event(spawned, partition_key=agent_id, component="t", agent_id=agent_id),
        of_type("agent:start", partition_key=agent_id, component="t", agent_id=agent_id),
        of_type("workflow:step:complete", partition_key="w", component="t", workflow_id="w1"),
    ]
    async with db.session() as session:
        stored = await EventStore(session).append(events)
    assert [e.sequence for e in stored] == [1, 2, 3]
    async with db.session() as session:
        again = await EventStore(session).append(
            [events[1], of_type("team:start", partition_key="t", component="t")]
        )
    assert [e.type for e in again] == ["team:start"] and again[0].sequence == 4
    async with db.reader() as session:
        store = EventStore(session)
        assert [
            e.type for e in await store.query(EventFilter(types=("agent:*",)), audience=EVERY_EVENT, limit=10)
        ] == [
            "agent:spawn",
            "agent:start",
        ]
        assert [
            e.type
            for e in await store.query(
                EventFilter(types=("workflow:step:*",)), audience=EVERY_EVENT, limit=10
            )
        ] == ["workflow:step:complete"]
        assert [
            e.sequence
            for e in await store.query(EventFilter(), audience=EVERY_EVENT, limit=2, after_sequence=2)
        ] == [3, 4]
        newest = await store.query(
            EventFilter(agent_id=agent_id), audience=EVERY_EVENT, limit=10, descending=True
        )
        assert [e.type for e in newest] == ["agent:start", "agent:spawn"]
        got = await store.get(events[0].id, audience=EVERY_EVENT)
        assert got is not None and got.agent_spawned == spawned and got.sequence == 1
        assert await store.last_sequence() == 4


async def test_outbox_rows_commit_or_roll_back_with_the_state_change(db: Database) -> None:
    await upgrade(db, AgentService.migrations)
    event = of_type("agent:spawn", partition_key="a", component="t")
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await AgentRepository(session).add(_agent(1, label="rollback"))
            await enqueue(session, [event])
            raise RuntimeError("handler failed after writing")
    async with db.reader() as session:
        assert (await session.execute(select(outbox))).all() == []
        rows, _ = await AgentRepository(session).find(
            AgentQuery(label="rollback"), EVERYTHING, page_size=5, page_token=""
        )
        assert list(rows) == []
    async with db.session() as session:
        await enqueue(session, [event])
    async with db.reader() as session:
        row = (await session.execute(select(outbox))).mappings().one()
    assert row["topic"] == "godel.agent.events" and row["key"] == "a"
    decoded = event_pb2.Event()
    decoded.ParseFromString(row["value"])
    assert decoded.id == event.id


async def _backend_pid(db: Database) -> int:
    async with db.reader() as session:
        pid: int = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


def _counted_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = db.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return pings


async def test_a_pooled_connection_in_steady_use_is_not_pinged(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.url(f"ping_{uuid.uuid4().hex[:10]}")
    await ensure_postgres_database(url)
    busy, idle = Database(url, ping_idle_after=3600), Database(url, ping_idle_after=0)
    try:
        busy_pings, idle_pings = _counted_pings(busy, monkeypatch), _counted_pings(idle, monkeypatch)
        for _ in range(20):
            await _backend_pid(busy)
            await _backend_pid(idle)
        # One connection each, reused: pinged at a checkout only when it has been idle long enough.
        assert len(busy_pings) == 0
        assert len(idle_pings) == 20
    finally:
        await busy.close()
        await idle.close()


async def test_a_pooled_connection_the_server_closed_while_idle_is_replaced(postgres: PostgresServer) -> None:
    url = postgres.url(f"ping_{uuid.uuid4().hex[:10]}")
    await ensure_postgres_database(url)
    db, admin = Database(url, ping_idle_after=0), Database(url)
    try:
        pid = await _backend_pid(db)
        async with admin.session() as session:  # as a server restart or an idle timeout would
            assert (await session.execute(text(f"SELECT pg_terminate_backend({pid})"))).scalar_one()
        # The pooled connection is dead: the ping finds it and the pool connects anew, unseen.
        assert await _backend_pid(db) != pid
        async with db.session() as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.close()
        await admin.close()


async def test_a_reader_runs_each_statement_on_its_own_on_postgresql(postgres: PostgresServer) -> None:
    """No transaction block around a read on PostgreSQL (one trip per query, not BEGIN and
    ROLLBACK around it): each statement is a transaction of its own. A writing session still
    keeps its statements in one."""
    url = postgres.url(f"read_{uuid.uuid4().hex[:10]}")
    await ensure_postgres_database(url)
    db = Database(url)
    started = text("SELECT transaction_timestamp()")
    try:
        async with db.reader() as session:
            first, second = [(await session.execute(started)).scalar_one() for _ in range(2)]
        assert second > first
        async with db.session() as session:
            first, second = [(await session.execute(started)).scalar_one() for _ in range(2)]
        assert second == first
    finally:
        await db.close()


async def test_a_reader_refuses_to_write(db: Database) -> None:
    await upgrade(db, AgentService.migrations)
    async with db.session() as session:
        await AgentRepository(session).add(_agent(1, label="kept"))
    async with db.reader() as session:
        with pytest.raises(ReadOnlySessionError):
            await session.execute(update(AgentRow).values(label="changed"))
        with pytest.raises(ReadOnlySessionError):
            await session.execute(delete(AgentRow))
        session.add(_agent(2, label="added"))
        with pytest.raises(ReadOnlySessionError):
            await session.flush()
    async with db.reader() as session:
        rows = (await session.execute(select(AgentRow.label))).scalars().all()
    assert rows == ["kept"]


class _Kafka:
    """The producer as the outbox relay sees it: each send is acknowledged once `answering` is set,
    or refused when its event id is in `refused`; `sent` holds the acknowledged ids in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.asked: list[str] = []
        self.refused: set[str] = set()
        self.answering = asyncio.Event()
        self.answering.set()
        self._answers: set[asyncio.Task[None]] = set()

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: list[Any]) -> asyncio.Future[None]:
        event_id = dict(headers)["ce_id"].decode()
        self.asked.append(event_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def answer() -> None:
            await self.answering.wait()
            if event_id in self.refused:
                future.set_exception(KafkaConnectionError("refused by the test"))
            else:
                self.sent.append(event_id)
                future.set_result(None)

        task = asyncio.create_task(answer())
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)
        return future


async def _outboxed(db: Database, n: int) -> list[str]:
    events = [of_type("agent:spawn", partition_key="a", component="t") for _ in range(n)]
    async with db.session() as session:
        await enqueue(session, events)
    return [e.id for e in events]


async def _outbox_ids(db: Database) -> list[str]:
    async with db.reader() as session:
        return list((await session.scalars(select(outbox.c.event_id).order_by(outbox.c.id))).all())


@pytest.fixture
async def pg_agent_db(postgres: PostgresServer) -> AsyncIterator[Database]:
    async with postgres_database(postgres, AgentService.migrations, "relay") as database:
        yield database


async def test_the_postgresql_relay_takes_rows_out_as_it_reads_them_and_keeps_what_kafka_did_not_take(
    pg_agent_db: Database,
) -> None:
    db, kafka = pg_agent_db, _Kafka()
    relay = OutboxRelay(db, cast(AIOKafkaProducer, kafka), poll_seconds=1.0)
    statements: list[str] = []
    listen(db.engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    first = await _outboxed(db, 5)
    statements.clear()
    assert await relay.relay_once() == 5
    assert kafka.sent == first, "in the order they were written"
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("DELETE FROM OUTBOX")
    assert await _outbox_ids(db) == []

    second = await _outboxed(db, 3)
    kafka.refused = {second[1]}
    with pytest.raises(SendFailed):
        await relay.relay_once()
    assert await _outbox_ids(db) == [second[1]], "the row Kafka did not take stays, the others left"
    assert kafka.sent == [*first, second[0], second[2]]
    kafka.refused.clear()
    assert await relay.relay_once() == 1
    assert kafka.sent[-1] == second[1] and await _outbox_ids(db) == []


async def test_two_postgresql_relays_never_take_the_same_rows(pg_agent_db: Database) -> None:
    db, held, other = pg_agent_db, _Kafka(), _Kafka()
    ids = await _outboxed(db, 4)
    held.answering.clear()  # Kafka is slow to acknowledge the first relay's sends
    first = asyncio.create_task(OutboxRelay(db, cast(AIOKafkaProducer, held), 1.0).relay_once())
    await wait_for_async(lambda: len(held.asked) == 4, 10, "the first relay's sends")
    assert await OutboxRelay(db, cast(AIOKafkaProducer, other), 1.0).relay_once() == 0
    assert other.asked == [] and await _outbox_ids(db) == ids, "taken but not committed: still there"
    held.answering.set()
    assert await first == 4
    assert held.sent == ids and await _outbox_ids(db) == []
