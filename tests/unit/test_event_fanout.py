"""Live delivery when several event-service replicas share the store (event/fanout.py): each
replica's subscribers get every stored event, whichever replica stored it, in sequence order,
once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from godel.v1 import event_pb2
from godel_server.event.fanout import PAGE, StoreFanout
from godel_server.event.hub import DROP, Subscription, SubscriptionHub
from godel_server.event.service import EventService
from godel_server.event.store import EventFilter, EventStore
from godel_server.event.visibility import EVERY_EVENT
from godel_server.runtime.db import Database
from tests.fakes.events import of_type
from tests.unit.conftest import migrated


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated(tmp_path / "event.db", EventService.migrations) as database:
        yield database


async def appended(db: Database, n: int) -> list[event_pb2.Event]:
    """Stores `n` new events as one replica's ingest does; the stored events."""
    async with db.session() as session:
        return await EventStore(session).append([of_type("agent:start") for _ in range(n)])


async def store(db: Database, n: int) -> list[int]:
    """Stores `n` new events as one replica's ingest does; their sequence numbers."""
    return [e.sequence for e in await appended(db, n)]


def replica(db: Database) -> tuple[SubscriptionHub, StoreFanout, Subscription]:
    """One replica's hub and fan-out, with one subscriber to every event."""
    hub = SubscriptionHub()
    return hub, StoreFanout(db, hub, 1.0), subscribed(hub)


def subscribed(hub: SubscriptionHub) -> Subscription:
    sub = Subscription(EventFilter(), DROP, 10 * PAGE, EVERY_EVENT)
    hub.add(sub)
    return sub


async def test_each_replica_delivers_what_either_stored_in_order_once(db: Database) -> None:
    hubs = [SubscriptionHub(), SubscriptionHub()]
    fanouts = [StoreFanout(db, hub, 1.0) for hub in hubs]
    subs = [subscribed(hub) for hub in hubs]
    # Replica 0 stores, then replica 1, then 0 again; each delivers when it looks.
    sequences = await store(db, 3)
    assert await fanouts[0].catch_up() == 3
    sequences += await store(db, 2)
    sequences += await store(db, PAGE + 1)  # more than a page behind
    for fanout in fanouts:
        await fanout.catch_up()
        assert await fanout.catch_up() == 0  # nothing twice
    assert sequences == list(range(1, len(sequences) + 1))  # one gap-free sequence
    for sub, hub in zip(subs, hubs, strict=True):
        assert [e.sequence for e in sub.buffer] == sequences
        assert hub.last_published == sequences[-1]


async def test_a_replica_started_late_delivers_only_what_comes_after(db: Database) -> None:
    await store(db, 4)
    hub = SubscriptionHub()
    async with db.reader() as session:
        hub.last_published = await EventStore(session).last_sequence()  # as EventService.start
    sub = subscribed(hub)
    new = await store(db, 2)
    await StoreFanout(db, hub, 1.0).catch_up()
    assert [e.sequence for e in sub.buffer] == new == [5, 6]


async def test_what_a_replica_stored_after_the_last_published_is_delivered_without_a_read(
    db: Database,
) -> None:
    hub, fanout, sub = replica(db)
    stored = await appended(db, 3)
    fanout.stored(stored)  # synchronous: no read of the store can have happened
    assert [e.sequence for e in sub.buffer] == [1, 2, 3]
    assert hub.last_published == 3 and not fanout._wake.is_set()
    assert await fanout.catch_up() == 0  # and the store has nothing more to give


async def test_a_batch_after_another_replicas_is_read_from_the_store_in_order(db: Database) -> None:
    _hub, fanout, sub = replica(db)
    theirs = await store(db, 2)  # another replica's, not seen here yet
    ours = await appended(db, 2)
    fanout.stored(ours)
    assert not sub.buffer and fanout._wake.is_set()  # 3 does not follow 0: the store is read
    assert await fanout.catch_up() == 4
    assert [e.sequence for e in sub.buffer] == theirs + [e.sequence for e in ours] == [1, 2, 3, 4]


async def test_events_published_from_memory_during_a_read_of_the_store_are_not_published_twice(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hub, fanout, sub = replica(db)
    stored = await appended(db, 2)
    query = EventStore.query

    async def read_while_the_ingest_delivers(self: EventStore, *args: object, **kwargs: object) -> object:
        found = await query(self, *args, **kwargs)  # type: ignore[arg-type]
        fanout.stored(stored)  # the ingest's after_commit runs while the read is under way
        return found

    monkeypatch.setattr(EventStore, "query", read_while_the_ingest_delivers)
    assert await fanout.catch_up() == 0
    assert [e.sequence for e in sub.buffer] == [1, 2]
