"""The event service's ingest (event/ingest.py over runtime/consumer.py) on a real SQLite event store:
each event is stored once, numbered after the last stored one with no gap, fanned out once; a
redelivered event is neither stored nor fanned out again; what the store cannot keep is named."""

from __future__ import annotations

from sqlalchemy import func, select

from godel.v1 import agent_events_pb2, agent_pb2, event_pb2
from godel_server.event.fanout import StoreFanout
from godel_server.event.hub import SLIDING, Subscription, SubscriptionHub
from godel_server.event.ingest import EventIngest
from godel_server.event.models import EventRow
from godel_server.event.store import EventFilter, EventStore, storage_problem
from godel_server.event.visibility import EVERY_EVENT
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.events import custom_event, new_event, payload_dict
from godel_server.runtime.tables import processed_events


def _ingest(db: Database, fanout: StoreFanout) -> EventIngest:
    letters = DeadLetterStore(db, component="event-service", instance="event-1")
    return EventIngest(
        db, KafkaSettings(bootstrap="127.0.0.1:1"), fanout, client_id="event-1", dead_letters=letters
    )


def _spawned(agent_id: str) -> event_pb2.Event:
    agent = agent_pb2.Agent(id=agent_id, task="t", label="bench")
    return new_event(
        agent_events_pb2.AgentSpawned(agent=agent), partition_key=agent_id, component="t", agent_id=agent_id
    )


async def test_events_are_stored_once_in_sequence_and_fanned_out_once(event_db: Database) -> None:
    hub = SubscriptionHub()
    live = Subscription(EventFilter(types=("*",)), SLIDING, 100, EVERY_EVENT)
    hub.add(live)
    fanout = StoreFanout(event_db, hub, poll_seconds=60)
    ingest = _ingest(event_db, fanout)
    first = [custom_event("demo:x", {"i": i}, partition_key="", component="t") for i in range(3)]
    spawn = _spawned("a" * 36)

    async def deliver(events: list[event_pb2.Event]) -> list[int]:
        handled = await ingest._handle(events)
        await ingest.after_commit(handled)
        await fanout.catch_up()  # what the poked fan-out task does
        return [e.sequence for e in handled]

    assert await deliver(first[:2]) == [1, 2]
    # A batch with an event already handled: only the new ones are stored, numbered after the last.
    assert await deliver([first[1], first[2], spawn]) == [3, 4]
    assert await deliver([*first, spawn]) == [], "a redelivered batch changes nothing"
    assert [e.id for e in live.buffer] == [first[0].id, first[1].id, first[2].id, spawn.id]

    async with event_db.reader() as session:
        store = EventStore(session)
        assert await store.last_sequence() == 4
        stored = await store.get(spawn.id, audience=EVERY_EVENT)
        rows = await session.scalar(select(func.count()).select_from(EventRow))
        handled = await session.scalar(select(func.count()).select_from(processed_events))
        payload = await session.scalar(select(EventRow.payload).where(EventRow.id == spawn.id))
    # The store is the group's dedupe log (stores_each_id_once): no row of processed_events, one
    # statement less per batch.
    assert (rows, handled) == (4, 0)
    assert stored is not None and stored.sequence == 4 and stored.agent_spawned.agent.id == "a" * 36
    assert payload == payload_dict(spawn), "the typed payload is stored as JSON for SQL readers"


async def test_an_event_stored_by_another_path_is_not_numbered_twice(event_db: Database) -> None:
    """The store dedupes by id on its own (a dead letter retried with `again`, say)."""
    ingest = _ingest(event_db, StoreFanout(event_db, SubscriptionHub(), poll_seconds=60))
    event = custom_event("demo:x", {}, partition_key="", component="t")
    assert [e.sequence for e in await ingest._handle([event])] == [1]
    assert await ingest._handle([event], again=True) == [], "already in the store"
    later = custom_event("demo:x", {}, partition_key="", component="t")
    assert [e.sequence for e in await ingest._handle([later])] == [2]


def test_storage_problems_are_named() -> None:
    assert storage_problem(_spawned("a" * 36)) is None
    too_long = _spawned("a" * 36)
    too_long.metadata.agent_id = "a" * 37
    assert storage_problem(too_long) == "agent_id: 37 characters, the store keeps at most 36"
    untyped = custom_event("demo:x", {}, partition_key="", component="t")
    untyped.type = ""
    assert storage_problem(untyped) == "type: the event has no type"
