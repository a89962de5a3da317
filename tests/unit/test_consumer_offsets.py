"""When a consumer commits its offsets (runtime/consumer.py): only those of batches it processed, at
most every COMMIT_SECONDS while batches keep coming, at once when a poll brings none, and on stop;
never an offset of a batch that failed, nor of a partition the group gave to another member."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime import consumer as consumer_module
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.consumer import EventConsumer
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.events import custom_event
from tests.fakes.events import KafkaRecord

TOPIC = "godel.agent.events"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
Batch = dict[TopicPartition, list[KafkaRecord]]


class FakeKafka:
    """An AIOKafkaConsumer in the calls `_run` makes: each getmany returns the next batch ({}: a poll
    that found nothing); once they are all returned it waits for `add`."""

    def __init__(self, batches: list[Batch], assigned: set[TopicPartition]) -> None:
        self.batches = deque(batches)
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_error: Exception | None = None
        self.drained = asyncio.Event()
        self.more = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(self, timeout_ms: int) -> Batch:
        while not self.batches:
            self.drained.set()
            self.more.clear()
            await self.more.wait()
        return self.batches.popleft()

    def add(self, *batches: Batch) -> None:
        self.drained.clear()
        self.batches.extend(batches)
        self.more.set()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append(dict(offsets))


class Consumer(EventConsumer):
    group_id = "test-offsets"

    def __init__(self, db: Database, kafka: list[FakeKafka]) -> None:
        store = DeadLetterStore(db, component="agent-service", instance="a-1")
        super().__init__(db, KafkaSettings(), [TOPIC], client_id="t", dead_letters=store)
        self.kafka = deque(kafka)
        self.failing: set[str] = set()
        self.handled: list[str] = []
        self.on_handled: Any = None

    def _new_consumer(self) -> Any:
        return self.kafka.popleft() if self.kafka else FakeKafka([], set())

    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        if any(e.id in self.failing for e in events):
            raise OperationalError("INSERT", {}, ConnectionRefusedError("the database is down"))
        return events

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        self.handled += [e.id for e in events]
        if self.on_handled is not None:
            self.on_handled()


def records(partition: int, *offsets: int) -> list[KafkaRecord]:
    return [
        KafkaRecord(
            custom_event("demo:x", {}, partition_key="", component="t").SerializeToString(),
            TOPIC,
            partition,
            o,
        )
        for o in offsets
    ]


async def run_until_drained(consumer: Consumer, kafka: FakeKafka) -> asyncio.Task[None]:
    task = asyncio.create_task(consumer._run())
    await asyncio.wait_for(kafka.drained.wait(), 10)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
def long_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """No commit falls due by time during a test: only the first batch, an empty poll and a stop."""
    monkeypatch.setattr(consumer_module, "COMMIT_SECONDS", 3600.0)


@pytest.mark.usefixtures("long_interval")
async def test_batches_in_a_row_are_committed_together_when_a_poll_finds_nothing(agent_db: Database) -> None:
    kafka = FakeKafka(
        [{P0: records(0, 0)}, {P0: records(0, 1, 2)}, {P1: records(1, 7)}, {P0: records(0, 3)}, {}],
        {P0, P1},
    )
    consumer = Consumer(agent_db, [kafka])
    task = await run_until_drained(consumer, kafka)
    # The first batch at once; the next three together, after the poll that found nothing.
    assert kafka.commits == [{P0: 1}, {P0: 4, P1: 8}]
    assert len(consumer.handled) == 5
    await stop(task)
    assert len(kafka.commits) == 2  # nothing left to commit on stop


async def test_while_batches_keep_coming_a_commit_falls_due_after_the_interval(
    agent_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "COMMIT_SECONDS", 0.0)
    kafka = FakeKafka([{P0: records(0, 0)}, {P0: records(0, 1)}, {P0: records(0, 2)}], {P0})
    consumer = Consumer(agent_db, [kafka])
    await stop(await run_until_drained(consumer, kafka))
    assert kafka.commits == [{P0: 1}, {P0: 2}, {P0: 3}]


@pytest.mark.usefixtures("long_interval")
async def test_a_stopping_consumer_commits_what_it_processed(agent_db: Database) -> None:
    kafka = FakeKafka([{P0: records(0, 0)}, {P0: records(0, 1, 2)}], {P0})
    consumer = Consumer(agent_db, [kafka])
    task = await run_until_drained(consumer, kafka)
    assert kafka.commits == [{P0: 1}]
    await stop(task)
    assert kafka.commits == [{P0: 1}, {P0: 3}]


@pytest.mark.usefixtures("long_interval")
async def test_a_batch_that_failed_is_not_committed(agent_db: Database) -> None:
    failing = records(0, 2)
    kafka = FakeKafka([{P0: records(0, 0)}, {P0: records(0, 1)}, {P0: failing}], {P0})
    after = FakeKafka([], {P0})  # the consumer the failure's reconnect makes
    consumer = Consumer(agent_db, [kafka, after])
    event = event_pb2.Event()
    event.ParseFromString(failing[0].value)
    consumer.failing.add(event.id)
    task = asyncio.create_task(consumer._run())
    await asyncio.wait_for(after.drained.wait(), 10)
    await stop(task)
    # Offset 1 was processed but not committed yet when the database failed: it is read again
    # (deduped), and offset 2, never processed, is not committed either.
    assert kafka.commits == [{P0: 1}]
    assert len(consumer.handled) == 2


@pytest.mark.usefixtures("long_interval")
async def test_offsets_of_partitions_given_away_are_dropped_and_a_rebalanced_commit_is_no_reconnect(
    agent_db: Database,
) -> None:
    kafka = FakeKafka([{P0: records(0, 0)}, {P0: records(0, 1), P1: records(1, 5)}, {}], {P0, P1})
    consumer = Consumer(agent_db, [kafka])

    def give_partition_0_away() -> None:  # after the second batch, before its commit
        if len(consumer.handled) == 3:
            kafka.assigned = {P1}

    consumer.on_handled = give_partition_0_away
    task = await run_until_drained(consumer, kafka)
    assert kafka.commits == [{P0: 1}, {P1: 6}]
    kafka.commit_error = CommitFailedError("the group rebalanced")
    kafka.add({P1: records(1, 6)}, {})
    await asyncio.wait_for(kafka.drained.wait(), 10)
    assert len(consumer.handled) == 4
    assert not task.done() and not consumer.kafka, "the failed commit made no new consumer"
    kafka.commit_error = None
    kafka.add({P1: records(1, 7)}, {})
    await asyncio.wait_for(kafka.drained.wait(), 10)
    assert kafka.commits[-1] == {P1: 8}
    await stop(task)
