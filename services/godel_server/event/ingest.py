"""Consumes every Godel topic into the event store, then fans the stored events out live."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.event.hub import SubscriptionHub
from godel_server.event.store import EventStore
from godel_server.runtime.consumer import EventConsumer
from godel_server.runtime.db import Database
from godel_server.runtime.topics import ALL_TOPICS


class EventIngest(EventConsumer):
    group_id = "godel-event-store"

    def __init__(self, db: Database, bootstrap: str, hub: SubscriptionHub, *, client_id: str) -> None:
        super().__init__(db, bootstrap, ALL_TOPICS, client_id=client_id)
        self._hub = hub

    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        return await EventStore(session).append(events)

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        self._hub.publish(events)
