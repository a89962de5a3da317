"""Run requests over Kafka: replicas of the agent service share the `godel.agent.runs` topic in one
consumer group, so each requested run is claimed by exactly one replica (more replicas = more
agents; partitions of a dead replica move to the others)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.agent.runner import Decision, RunCoordinator
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.consumer import EventConsumer
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.topics import RUN_TOPIC


class RunRequestConsumer(EventConsumer):
    group_id = "godel-agent-runners"
    # Notice a dead replica sooner than the defaults so that its partitions move quickly.
    kafka_options = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

    def __init__(
        self,
        db: Database,
        kafka: KafkaSettings,
        coordinator: RunCoordinator,
        *,
        client_id: str,
        dead_letters: DeadLetterStore,
    ) -> None:
        super().__init__(db, kafka, [RUN_TOPIC], client_id=client_id, dead_letters=dead_letters)
        self._coordinator = coordinator
        # What the requests of transactions not yet over came to, by event id (a dead letter's
        # retry may run one while the poll loop runs another).
        self._decided: dict[str, Decision] = {}

    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        # Claimed and assigned (or refused, or noted as waiting) in this transaction.
        claimed = []
        for event in events:
            if not event.metadata.agent_id:
                continue
            decision = await self._coordinator.take(
                session, event.metadata.agent_id, self.trace_headers(event)
            )
            if decision is not None:
                self._decided[event.id] = decision
                claimed.append(event)
        return claimed

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        self._coordinator.taken(self._decisions_of(events))

    def rolled_back(self, events: list[event_pb2.Event]) -> None:
        self._coordinator.untaken(self._decisions_of(events))

    def _decisions_of(self, events: list[event_pb2.Event]) -> list[Decision]:
        return [decision for e in events if (decision := self._decided.pop(e.id, None)) is not None]
