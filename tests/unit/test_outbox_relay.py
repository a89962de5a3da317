"""The SQLite outbox relay: sends without the write lock, deletes sent rows in batches, and sends
again after a restart whatever it had not deleted (at-least-once; consumers dedupe by id)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import func, select

from godel_server.agent.service import AgentService
from godel_server.runtime.db import Database
from godel_server.runtime.events import custom_event
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.outbox import OutboxRelay, enqueue
from godel_server.runtime.tables import outbox
from tests.waits import wait_for_async


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: list[Any]) -> asyncio.Future[None]:
        self.sent.append(dict(headers)["ce_id"].decode())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def _add(db: Database, n: int) -> list[str]:
    events = [custom_event("relay:test", {"i": i}, partition_key="a", component="test") for i in range(n)]
    async with db.session() as session:
        await enqueue(session, events)
    return [e.id for e in events]


@asynccontextmanager
async def running(relay: OutboxRelay, db: Database) -> AsyncIterator[None]:
    """The relay's loop runs inside; then it stops and the database closes."""
    relay.start()
    try:
        yield
    finally:
        await relay.stop()
        await db.close()


async def _rows(db: Database) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(outbox)) or 0)


# time.monotonic() counts from boot: half a minute after boot, and after five weeks up.
@pytest.mark.parametrize("uptime", [30.0, 5 * 7 * 86400.0])
async def test_sqlite_relay_batches_deletes_and_resends_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uptime: float
) -> None:
    monkeypatch.setattr("godel_server.runtime.outbox.time.monotonic", lambda: uptime)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}")
    await upgrade(db, AgentService.migrations)
    producer = FakeProducer()
    relay = OutboxRelay(db, producer, poll_seconds=1.0, delete_seconds=3600)

    first = await _add(db, 3)
    assert await relay.relay_once() == 3
    assert producer.sent == first
    assert await _rows(db) == 0  # the first batch is deleted at once

    second = await _add(db, 2)
    assert await relay.relay_once() == 2
    assert producer.sent == first + second
    assert await _rows(db) == 2  # sent, deletion batched
    assert await relay.relay_once() == 0  # nothing is sent twice by the same relay

    restarted = OutboxRelay(db, producer, poll_seconds=1.0)
    assert await restarted.relay_once(final=True) == 2
    assert producer.sent == first + second + second  # at least once
    assert await _rows(db) == 0
    await db.close()


class CountedRelay(OutboxRelay):
    """Counts its passes; `passes[n]` is set once the n-th has ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count = 0
        self.passes = [asyncio.Event() for _ in range(4)]

    async def relay_once(self, *, final: bool = False) -> int:
        moved = await super().relay_once(final=final)
        self.count += 1
        if self.count < len(self.passes):
            self.passes[self.count].set()
        return moved


async def test_a_burst_of_events_costs_the_relay_one_pass(tmp_path: Path) -> None:
    """A pass that read less than a batch left nothing behind: the relay does not read the outbox
    again only to find it empty (on PostgreSQL a transaction of three round trips per burst)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}")
    await upgrade(db, AgentService.migrations)
    producer = FakeProducer()
    relay = CountedRelay(db, producer, poll_seconds=3600)  # only a notify wakes it
    async with running(relay, db):
        await asyncio.wait_for(relay.passes[1].wait(), 30)  # the pass at start, over an empty outbox
        burst = await _add(db, 3)
        relay.notify()  # what the publisher does once the transaction commits
        await asyncio.wait_for(relay.passes[2].wait(), 30)
        assert producer.sent == burst
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(relay.passes[3].wait(), 0.5)
        assert relay.count == 2


async def test_a_commit_during_a_pass_wakes_the_relay_again(tmp_path: Path) -> None:
    """Events committed while a pass sends (after it read the outbox) go out at once, not after
    the poll interval."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}")
    await upgrade(db, AgentService.migrations)
    relay: OutboxRelay
    late: list[str] = []
    all_sent = asyncio.Event()

    class CommitsDuringTheSend(FakeProducer):
        async def send(
            self, topic: str, *, value: bytes, key: bytes, headers: list[Any]
        ) -> asyncio.Future[None]:
            if not late:
                late.extend(await _add(db, 1))
                relay.notify()
            done = await super().send(topic, value=value, key=key, headers=headers)
            if len(self.sent) == 3:
                all_sent.set()
            return done

    producer = CommitsDuringTheSend()
    relay = OutboxRelay(db, producer, poll_seconds=3600)
    first = await _add(db, 2)
    async with running(relay, db):
        await asyncio.wait_for(all_sent.wait(), 30)
        assert producer.sent == first + late


async def test_a_failing_send_backs_off_and_the_rows_go_out_once_kafka_answers(tmp_path: Path) -> None:
    """Each failed pass doubles the wait before the next (a notify does not cut it short); the first
    pass that sends returns the relay to its poll interval, and no row is lost."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}")
    await upgrade(db, AgentService.migrations)
    all_sent = asyncio.Event()

    class DownTwice(FakeProducer):
        def __init__(self) -> None:
            super().__init__()
            self.refused = 0

        async def send(
            self, topic: str, *, value: bytes, key: bytes, headers: list[Any]
        ) -> asyncio.Future[None]:
            if self.refused < 2:
                self.refused += 1
                relay.notify()  # a commit while Kafka is down
                raise KafkaConnectionError("broker down")
            done = await super().send(topic, value=value, key=key, headers=headers)
            all_sent.set()
            return done

    waits: list[tuple[float, bool]] = []

    class RecordedWaits(OutboxRelay):
        async def _sleep(self, seconds: float) -> None:
            waits.append((seconds, self._wake.is_set()))
            await super()._sleep(seconds)

    producer = DownTwice()
    relay = RecordedWaits(db, producer, poll_seconds=0.01)
    queued = await _add(db, 1)
    async with running(relay, db):
        await asyncio.wait_for(all_sent.wait(), 30)
        await wait_for_async(lambda: len(waits) >= 3, 30, "the relay's third wait")
    assert producer.sent == queued
    assert waits[:3] == [(0.02, False), (0.04, False), (0.01, False)]
