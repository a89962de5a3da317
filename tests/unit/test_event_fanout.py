"""Live delivery when several event-service replicas share the store (event/fanout.py): each
replica's subscribers get every stored event, whichever replica stored it, in sequence order,
once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from godel_server.event.fanout import PAGE, StoreFanout
from godel_server.event.hub import DROP, Subscription, SubscriptionHub
from godel_server.event.service import EventService
from godel_server.event.store import EventFilter, EventStore
from godel_server.runtime.db import Database
from tests.fakes.events import of_type
from tests.unit.conftest import migrated


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated(tmp_path / "event.db", EventService.migrations) as database:
        yield database


async def store(db: Database, n: int) -> list[int]:
    """Stores `n` new events as one replica's ingest does; their sequence numbers."""
    async with db.session() as session:
        stored = await EventStore(session).append([of_type("agent:start") for _ in range(n)])
    return [e.sequence for e in stored]


def subscribed(hub: SubscriptionHub) -> Subscription:
    sub = Subscription(EventFilter(), DROP, 10 * PAGE)
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
