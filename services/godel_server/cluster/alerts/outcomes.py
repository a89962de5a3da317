"""The ends of teams and workflows, told to the notification channels they name
(TeamConfig.notify_channels, WorkflowDefinition.notify_channels; spec §1.4): the cluster service's
consumer (group `godel-cluster-notifications`) of the team and workflow topics reads each final
event (`team:complete`, `team:error`, `workflow:complete`, `workflow:error`, `workflow:cancel`),
whose payload carries the names, and sends one line to each channel of those names: through its
OpenClaw Gateway, as a webhook's JSON, or as an event channel's `system:notify` event (published in
the consumer's transaction). A name that matches no channel is skipped."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2, team_events_pb2, workflow_events_pb2
from godel_server.cluster.alerts.kinds import ChannelType
from godel_server.cluster.alerts.mapping import channel_of
from godel_server.cluster.alerts.notify import Channel, Notifier
from godel_server.cluster.models import ChannelRow
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.consumer import EventConsumer
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.events import event_data
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.topics import DOMAIN_TOPICS

log = logging.getLogger(__name__)

WEBHOOK_VERSION = "1"
# The final events of teams and workflows, and the word each puts in its line.
ENDINGS: dict[type, str] = {
    team_events_pb2.TeamCompleted: "completed",
    team_events_pb2.TeamFailed: "failed",
    workflow_events_pb2.WorkflowCompleted: "completed",
    workflow_events_pb2.WorkflowFailed: "failed",
    workflow_events_pb2.WorkflowCancelled: "cancelled",
}


@dataclass(frozen=True)
class Outcome:
    kind: str  # "team" or "workflow"
    id: str
    name: str
    status: str  # completed, failed, cancelled
    error: str
    channels: tuple[str, ...]

    @property
    def text(self) -> str:
        """The one-line notification, e.g. `[team] docs failed: budget exhausted (team <id>)`."""
        error = f": {self.error}" if self.error else ""
        return f"[{self.kind}] {self.name or self.id} {self.status}{error} ({self.kind} {self.id})"

    def payload(self, channel: Channel) -> dict[str, Any]:
        """A webhook's JSON body."""
        return {
            "version": WEBHOOK_VERSION,
            "channel": channel.name,
            "status": self.status,
            self.kind: {"id": self.id, "name": self.name, "error": self.error},
            "message": self.text,
        }


def outcome_of(event: event_pb2.Event) -> Outcome | None:
    """The end a final team or workflow event tells (None for other events)."""
    data = event_data(event)
    status = ENDINGS.get(type(data))
    if status is None:
        return None
    if isinstance(data, team_events_pb2.TeamCompleted | team_events_pb2.TeamFailed):
        kind, ident = "team", data.team_id
    else:
        assert isinstance(
            data,
            workflow_events_pb2.WorkflowCompleted
            | workflow_events_pb2.WorkflowFailed
            | workflow_events_pb2.WorkflowCancelled,
        )
        kind, ident = "workflow", data.workflow_id
    return Outcome(kind, ident, data.name, status, data.error, tuple(data.notify_channels))


class OutcomeNotifications(EventConsumer):
    group_id = "godel-cluster-notifications"

    def __init__(
        self,
        db: Database,
        kafka: KafkaSettings,
        publisher: EventPublisher,
        notifier: Notifier,
        *,
        client_id: str,
        dead_letters: DeadLetterStore,
    ) -> None:
        topics = [DOMAIN_TOPICS["team"], DOMAIN_TOPICS["workflow"]]
        super().__init__(db, kafka, topics, client_id=client_id, dead_letters=dead_letters)
        self._publisher = publisher
        self._notifier = notifier
        # What to send after the commit, by the id of the event that asked for it.
        self._posts: dict[str, list[tuple[Channel, Outcome]]] = {}

    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        # A failed batch is handled again from scratch: forget what the failed attempt planned.
        self._posts = {}
        ends = [(e, o) for e in events if (o := outcome_of(e)) is not None and o.channels]
        if not ends:
            return []
        names = {name for _, o in ends for name in o.channels}
        rows = (await session.scalars(select(ChannelRow).where(ChannelRow.name.in_(names)))).all()
        channels = {row.name: channel_of(row) for row in rows}
        notices: list[event_pb2.Event] = []
        for event, outcome in ends:
            for name in outcome.channels:
                channel = channels.get(name)
                if channel is None:
                    log.warning(
                        "no notification channel of that name",
                        extra={"channel": name, outcome.kind: outcome.id},
                    )
                elif channel.type == ChannelType.EVENT:
                    notices.append(self._notifier.event(channel, outcome.text))
                else:
                    self._posts.setdefault(event.id, []).append((channel, outcome))
        await self._publisher.publish(session, notices)
        return [e for e, _ in ends]

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        for event in events:
            for channel, outcome in self._posts.pop(event.id, []):
                self._notifier.deliver(channel, outcome.text, outcome.payload(channel))
