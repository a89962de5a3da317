"""The one event publisher: services hand it events inside their DB transaction; they reach Kafka
through the outbox relay as soon as the transaction commits. It stamps each event with the
federation cluster it happened on (`source.cluster`), unless the event already names one (events a
peer cluster sent about an agent it runs keep the peer's name)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime import outbox
from godel_server.runtime.outbox import OutboxRelay


class EventPublisher:
    def __init__(self, relay: OutboxRelay | None, cluster: str = "") -> None:
        self._relay = relay
        self._cluster = cluster

    async def publish(self, session: AsyncSession, events: Sequence[event_pb2.Event]) -> None:
        for event in events:
            if not event.source.cluster:
                event.source.cluster = self._cluster
        await outbox.enqueue(session, events)
        if self._relay is not None:
            relay = self._relay
            sa_event.listen(session.sync_session, "after_commit", lambda _s: relay.notify(), once=True)
