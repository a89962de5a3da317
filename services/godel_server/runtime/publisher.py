"""The one event publisher: services hand it events inside their DB transaction; they reach Kafka
through the outbox relay as soon as the transaction commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime import outbox
from godel_server.runtime.outbox import OutboxRelay


class EventPublisher:
    def __init__(self, relay: OutboxRelay | None) -> None:
        self._relay = relay

    async def publish(self, session: AsyncSession, events: Sequence[event_pb2.Event]) -> None:
        await outbox.enqueue(session, events)
        if self._relay is not None:
            relay = self._relay
            sa_event.listen(session.sync_session, "after_commit", lambda _s: relay.notify(), once=True)
