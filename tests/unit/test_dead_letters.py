"""Dead letters (runtime/deadletters.py): the outbox relay and the consumers quarantine a record
they cannot send or handle and go on with the next one; an operator retries or deletes it."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from sqlalchemy import func, select
from sqlalchemy.exc import InternalError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime import consumer as consumer_module
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.consumer import EventConsumer
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import OUTBOX, DeadLetterStore
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError
from godel_server.runtime.events import custom_event
from godel_server.runtime.outbox import SEND_ATTEMPTS, OutboxRelay, SendFailed, enqueue
from godel_server.runtime.tables import outbox, processed_events
from tests.fakes.events import KafkaRecord

LIMIT = 1000


class Producer:
    """Refuses values over LIMIT bytes like Kafka does; `down` fails every send; `flaky` fails
    the sends of events with these ids."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.down = False
        self.flaky: set[str] = set()

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: list[Any]) -> asyncio.Future[None]:
        event_id = dict(headers)["ce_id"].decode()
        if len(value) > LIMIT:
            raise MessageSizeTooLargeError(f"the message is {len(value)} bytes")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.down or event_id in self.flaky:
            done.set_exception(KafkaConnectionError("no broker"))
        else:
            self.sent.append(event_id)
            done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, *, value: bytes, key: bytes | None, headers: list[Any]) -> None:
        await (await self.send(topic, value=value, key=key or b"", headers=headers))


def _event(size: int = 10, event_type: str = "agent:test") -> event_pb2.Event:
    return custom_event(
        event_type, {"blob": "x" * size}, partition_key="a", component="test", agent_id="a" * 36
    )


async def _outbox_types(agent_db: Database) -> list[str]:
    async with agent_db.reader() as session:
        values = (await session.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars().all()
    return [event_pb2.Event.FromString(v).type for v in values]


async def test_the_relay_quarantines_a_record_kafka_refuses_and_sends_the_rest(agent_db: Database) -> None:
    producer = Producer()
    store = DeadLetterStore(agent_db, component="agent-service", instance="a-1", producer=producer)
    relay = OutboxRelay(agent_db, producer, poll_seconds=1.0, delete_seconds=0, dead_letters=store)
    small, big, after = _event(), _event(5000), _event()
    async with agent_db.session() as session:
        await enqueue(session, [small, big, after])

    assert await relay.relay_once() == 3
    assert producer.sent == [small.id, after.id]
    [letter] = await store.list()
    assert (letter.source, letter.event_id, letter.event_type) == (OUTBOX, big.id, "agent:test")
    assert "MessageSizeTooLargeError" in letter.error and letter.attempts == 1
    assert await _outbox_types(agent_db) == ["system:poison"]  # announced through the outbox

    assert await relay.relay_once() == 1  # the poison event goes out like any other
    async with agent_db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(outbox)) == 0

    with pytest.raises(FailedPreconditionError, match="failed again"):
        await store.retry(letter.id)  # still too large
    assert (await store.get(letter.id)).attempts == 2
    await store.delete(letter.id)
    with pytest.raises(NotFoundError):
        await store.get(letter.id)


async def test_a_record_that_keeps_failing_while_others_go_through_is_quarantined(agent_db: Database) -> None:
    producer = Producer()
    store = DeadLetterStore(agent_db, component="agent-service", instance="a-1", producer=producer)
    relay = OutboxRelay(agent_db, producer, poll_seconds=1.0, delete_seconds=0, dead_letters=store)
    stuck = _event()
    producer.flaky.add(stuck.id)
    async with agent_db.session() as session:
        await enqueue(session, [stuck])
    for _ in range(SEND_ATTEMPTS + 2):  # alone, it cannot tell a bad record from a Kafka outage
        with pytest.raises(SendFailed):
            await relay.relay_once()
    assert await store.list() == []
    other = _event()
    async with agent_db.session() as session:
        await enqueue(session, [other])
    assert await relay.relay_once() == 2  # Kafka took the other row: the stuck one is quarantined
    [letter] = await store.list()
    assert letter.event_id == stuck.id and letter.attempts == SEND_ATTEMPTS + 3
    assert other.id in producer.sent

    # The failure is gone: the operator's retry sends it, and the dead letter goes.
    producer.flaky.clear()
    await store.retry(letter.id)
    assert stuck.id in producer.sent and await store.list() == []


async def test_nothing_is_quarantined_while_kafka_is_down(agent_db: Database) -> None:
    producer = Producer()
    producer.down = True
    store = DeadLetterStore(agent_db, component="agent-service", instance="a-1", producer=producer)
    relay = OutboxRelay(agent_db, producer, poll_seconds=1.0, delete_seconds=0, dead_letters=store)
    async with agent_db.session() as session:
        await enqueue(session, [_event() for _ in range(3)])
    for _ in range(SEND_ATTEMPTS * 2):
        with pytest.raises(SendFailed):
            await relay.relay_once()
    assert await store.list() == []
    producer.down = False
    assert await relay.relay_once() == 3


async def test_the_relay_logs_a_lost_database_without_a_stack_trace_or_the_statement(
    agent_db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = OutboxRelay(agent_db, Producer(), poll_seconds=0.01)
    second_pass = asyncio.Event()
    passes = 0

    async def broken_connection() -> int:
        nonlocal passes
        passes += 1
        if passes == 2:
            second_pass.set()
        statement, parameters = "SELECT outbox.value FROM outbox", {"secret": "s3"}
        raise InternalError(statement, parameters, Exception("connection lost"), connection_invalidated=True)

    monkeypatch.setattr(relay, "relay_once", broken_connection)
    with caplog.at_level(logging.WARNING, logger="godel_server.runtime.outbox"):
        relay.start()
        try:
            await asyncio.wait_for(second_pass.wait(), 30)  # it went on trying
        finally:
            await relay.stop()
    [first, *_] = [r for r in caplog.records if r.name == "godel_server.runtime.outbox"]
    assert first.levelno == logging.WARNING and first.exc_info is None
    assert first.__dict__["error"] == "connection lost"  # the driver's words; no SQL, no parameters


# --------------------------------------------------------------------------------- consumers


class Consumer(EventConsumer):
    group_id = "test-group"

    def __init__(self, db: Database, store: DeadLetterStore) -> None:
        super().__init__(db, KafkaSettings(), ["godel.agent.events"], client_id="t", dead_letters=store)
        self.bad: set[str] = set()
        self.error: Exception = ValueError("cannot store this one")
        self.handled: list[str] = []

    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        for event in events:
            if event.id in self.bad:
                raise self.error
        return events

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        self.handled += [e.id for e in events]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "RETRY_PAUSE_SECONDS", 0.0)


async def _processed(agent_db: Database) -> set[str]:
    async with agent_db.reader() as session:
        return set((await session.scalars(select(processed_events.c.event_id))).all())


@pytest.mark.usefixtures("quick")
async def test_a_consumer_quarantines_the_record_it_cannot_handle_and_goes_on(agent_db: Database) -> None:
    store = DeadLetterStore(agent_db, component="agent-service", instance="a-1")
    consumer = Consumer(agent_db, store)
    events = [_event() for _ in range(3)]
    consumer.bad.add(events[1].id)
    records = [KafkaRecord(e.SerializeToString(), offset=i) for i, e in enumerate(events)]
    records.append(KafkaRecord(b"\xff not an event", offset=3))

    await consumer._process(records)
    assert consumer.handled == [events[0].id, events[2].id]
    letters = await store.list()
    assert [(d.source, d.event_id, d.kafka_offset) for d in letters] == [
        ("test-group", None, 3),
        ("test-group", events[1].id, 1),
    ]
    assert letters[0].error.startswith("not a godel.v1.Event") and "cannot store" in letters[1].error
    assert await _processed(agent_db) == {e.id for e in events}  # a redelivery skips the bad one
    assert await _outbox_types(agent_db) == ["system:poison", "system:poison"]

    consumer.bad.clear()  # fixed: the operator's retry handles it and removes the dead letter
    await store.retry(letters[1].id)
    assert consumer.handled[-1] == events[1].id
    assert [d.id for d in await store.list()] == [letters[0].id]
    with pytest.raises(FailedPreconditionError, match="failed again"):
        await store.retry(letters[0].id)


# Two faces of a database going away: it refuses the connection, or the connection breaks under the
# statement (asyncpg may then raise an InternalError, which SQLAlchemy marks connection_invalidated).
OUTAGES = [
    OperationalError("INSERT", {}, ConnectionRefusedError("db down")),
    InternalError("INSERT", {}, Exception("cannot switch to state 15"), connection_invalidated=True),
]


@pytest.mark.usefixtures("quick")
@pytest.mark.parametrize("outage", OUTAGES, ids=["refused", "broken-under-the-statement"])
async def test_a_database_outage_is_no_reason_to_quarantine(agent_db: Database, outage: Exception) -> None:
    store = DeadLetterStore(agent_db, component="agent-service", instance="a-1")
    consumer = Consumer(agent_db, store)
    event = _event()
    consumer.bad.add(event.id)
    consumer.error = outage
    with pytest.raises(type(outage)):
        await consumer._process([KafkaRecord(event.SerializeToString())])
    assert await store.list() == [] and await _processed(agent_db) == set()


@pytest.mark.usefixtures("quick")
async def test_an_event_with_an_id_longer_than_the_dedupe_column_is_quarantined_at_once(
    agent_db: Database,
) -> None:
    store = DeadLetterStore(agent_db, component="agent-service", instance="a-1")
    consumer = Consumer(agent_db, store)
    event = _event()
    event.id = "x" * 37
    await consumer._process([KafkaRecord(event.SerializeToString())])
    [letter] = await store.list()
    assert letter.event_id is None and letter.attempts == 1 and "id: must be at most 36" in letter.error


async def test_the_dedupe_log_is_pruned(agent_db: Database) -> None:
    consumer = Consumer(agent_db, DeadLetterStore(agent_db, component="agent-service", instance="a-1"))
    await consumer._process([KafkaRecord(_event().SerializeToString())])
    assert await consumer.prune(timedelta(days=1)) == 0
    assert await consumer.prune(timedelta(seconds=-1)) == 1
    assert await _processed(agent_db) == set()
