"""The one event publisher: services hand it events inside their DB transaction; they reach Kafka
through the outbox relay as soon as the transaction commits. It stamps each event with the
federation cluster it happened on (`source.cluster`), unless the event already names one (events a
peer cluster sent about an agent it runs keep the peer's name)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from godel.v1 import event_pb2
from godel_server.runtime import outbox
from godel_server.runtime.outbox import OutboxRelay

# The relays to wake once a session that published events commits (in the session's `info`).
RELAYS = "godel.outbox.relays"


@sa_event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    """One listener for every session, registered once: registering one per publishing session
    cost about 0.1 ms of a CreateAgent's CPU (bench/README.md, "Write path in process")."""
    for relay in session.info.pop(RELAYS, ()):
        relay.notify()


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
            session.sync_session.info.setdefault(RELAYS, set()).add(self._relay)
