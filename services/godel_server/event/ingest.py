"""Consumes every Godel topic into the event store (each replica the partitions the consumer group
gives it), then hands what it stored to the live fan-out (fanout.py). Kafka is a public surface: an event the store cannot keep (an id longer than its column, say) is quarantined
at once instead of failing every batch it is in."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.event.fanout import StoreFanout
from godel_server.event.store import EventStore, storage_problem
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.consumer import EventConsumer
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.topics import ALL_TOPICS, topic_for

# prometheus_client adds `_total` to a counter's name: this is spec §9.1's godel_events_total.
EVENTS = Counter("godel_events", "Events stored in the event store (each once), per topic", ["topic"])


class EventIngest(EventConsumer):
    group_id = "godel-event-store"
    stores_each_id_once = True  # EventStore.append skips the ids it has
    # A replica that died gives its partitions to the others within seconds.
    kafka_options = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

    def __init__(
        self,
        db: Database,
        kafka: KafkaSettings,
        fanout: StoreFanout,
        *,
        client_id: str,
        dead_letters: DeadLetterStore,
    ) -> None:
        super().__init__(db, kafka, ALL_TOPICS, client_id=client_id, dead_letters=dead_letters)
        self._fanout = fanout

    def poison_reason(self, event: event_pb2.Event) -> str | None:
        return super().poison_reason(event) or storage_problem(event)

    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        return await EventStore(session).append(events)

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        for event in events:
            EVENTS.labels(topic_for(event.type)).inc()
        self._fanout.stored(events)
