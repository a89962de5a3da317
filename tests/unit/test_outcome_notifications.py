"""Team and workflow ends told to the notification channels they name (cluster/alerts/outcomes.py,
team/notifications.py): the line and webhook body of each end, the consumer on a real SQLite cluster
database (an OpenClaw or webhook channel gets a delivery after the commit, an event channel a
`system:notify` event in the transaction, an unknown name nothing, a redelivered event nothing), and
the checks of the names: bounded, given once, and only for callers with alert:create."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from godel.v1 import event_pb2, team_events_pb2, team_pb2, workflow_events_pb2, workflow_pb2
from godel_server.cluster.alerts.kinds import ChannelType
from godel_server.cluster.alerts.notify import Channel, Notifier
from godel_server.cluster.alerts.outcomes import OutcomeNotifications, outcome_of
from godel_server.cluster.models import ChannelRow
from godel_server.cluster.service import ClusterService
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.context import Caller, caller_var
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.errors import PermissionDeniedError
from godel_server.runtime.events import event_data, new_event, utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.tables import outbox
from godel_server.runtime.validation import Violations
from godel_server.team.notifications import check_notify_channels, require_notify_permission
from godel_server.team.teams.validation import check_config
from godel_server.team.workflows.definition import check_definition, load_definition
from tests.unit.conftest import migrated

TEAM_ID = "11111111-1111-1111-1111-111111111111"
WORKFLOW_ID = "22222222-2222-2222-2222-222222222222"


def _event(data: Any, key: str) -> event_pb2.Event:
    return new_event(data, partition_key=key, component="team-service")


def _team_failed(*channels: str) -> event_pb2.Event:
    data = team_events_pb2.TeamFailed(
        team_id=TEAM_ID, name="docs", error="budget exhausted", notify_channels=channels
    )
    return _event(data, TEAM_ID)


def _workflow_completed(*channels: str) -> event_pb2.Event:
    data = workflow_events_pb2.WorkflowCompleted(
        workflow_id=WORKFLOW_ID, name="release", notify_channels=channels
    )
    return _event(data, WORKFLOW_ID)


def test_the_line_and_the_webhook_body_of_an_end() -> None:
    failed = outcome_of(_team_failed("ops"))
    assert failed is not None and failed.channels == ("ops",)
    assert failed.text == f"[team] docs failed: budget exhausted (team {TEAM_ID})"
    done = outcome_of(_workflow_completed("ops"))
    assert done is not None and done.text == f"[workflow] release completed (workflow {WORKFLOW_ID})"
    channel = Channel("c1", "ops", ChannelType.WEBHOOK, "http://x")
    assert done.payload(channel) == {
        "version": "1",
        "channel": "ops",
        "status": "completed",
        "workflow": {"id": WORKFLOW_ID, "name": "release", "error": ""},
        "message": done.text,
    }
    cancelled = workflow_events_pb2.WorkflowCancelled(workflow_id=WORKFLOW_ID, error="stop")
    assert outcome_of(_event(cancelled, WORKFLOW_ID)).text == (  # type: ignore[union-attr]
        f"[workflow] {WORKFLOW_ID} cancelled: stop (workflow {WORKFLOW_ID})"
    )
    assert outcome_of(_event(team_events_pb2.TeamStarted(team_id=TEAM_ID), TEAM_ID)) is None


class Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__("cluster-1")
        self.sent: list[tuple[str, str, Mapping[str, Any]]] = []

    def deliver(self, channel: Channel, text: str, payload: Mapping[str, Any]) -> None:
        self.sent.append((channel.name, text, payload))


@pytest.fixture
async def cluster_db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated(tmp_path / "cluster.db", ClusterService.migrations) as database:
        yield database


async def test_the_consumer_tells_the_named_channels_once(cluster_db: Database) -> None:
    async with cluster_db.session() as session:
        for name, kind in (("claw", ChannelType.OPENCLAW), ("feed", ChannelType.EVENT)):
            session.add(
                ChannelRow(
                    id=str(uuid.uuid4()),
                    name=name,
                    type=kind,
                    url="ws://127.0.0.1:1" if kind == ChannelType.OPENCLAW else None,
                    openclaw_channel="irc" if kind == ChannelType.OPENCLAW else None,
                    target="#ops" if kind == ChannelType.OPENCLAW else None,
                    created_at=utcnow(),
                )
            )
    notifier = Recorder()
    letters = DeadLetterStore(cluster_db, component="cluster-service", instance="cluster-1")
    consumer = OutcomeNotifications(
        cluster_db,
        KafkaSettings(bootstrap="127.0.0.1:1"),
        EventPublisher(None),
        notifier,
        client_id="cluster-1",
        dead_letters=letters,
    )
    started = _event(team_events_pb2.TeamStarted(team_id=TEAM_ID), TEAM_ID)
    batch = [started, _team_failed("claw", "feed", "nowhere"), _workflow_completed()]

    handled = await consumer._handle(batch)
    await consumer.after_commit(handled)
    line = f"[team] docs failed: budget exhausted (team {TEAM_ID})"
    assert [(name, text) for name, text, _ in notifier.sent] == [("claw", line)]
    async with cluster_db.reader() as session:
        queued = [
            event_pb2.Event.FromString(v) for v in (await session.scalars(select(outbox.c.value))).all()
        ]
    notices = [event_data(e) for e in queued]
    assert [(n.channel, n.message) for n in notices] == [("feed", line)]  # type: ignore[union-attr]

    again = await consumer._handle(batch)  # redelivered: nothing is told twice
    await consumer.after_commit(again)
    assert len(notifier.sent) == 1
    await notifier.close()


def test_channel_names_are_checked() -> None:
    v = Violations()
    check_notify_channels(v, "notify_channels", ["ops", "", "ops", "x" * 256])
    assert [i.field for i in v.items] == ["notify_channels[1]", "notify_channels[2]", "notify_channels[3]"]
    v = Violations()
    check_config(v, team_pb2.TeamConfig(notify_channels=["a", "a"]))
    assert [i.field for i in v.items] == ["config.notify_channels[1]"]
    definition = load_definition(
        '{"name": "w", "notifyChannels": ["ops", ""], "steps": [{"id": "a", "task": "t"}]}'
    )
    assert list(definition.notify_channels) == ["ops", ""]
    assert [p.field for p in check_definition(definition)] == ["notifyChannels[1]"]
    assert (
        check_definition(
            workflow_pb2.WorkflowDefinition(name="w", steps=[workflow_pb2.StepDefinition(id="a", task="t")])
        )
        == []
    )


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("operator", True), ("developer", False)])
def test_naming_channels_needs_alert_create(role: str, allowed: bool) -> None:
    caller_var.set(Caller(key_id="k", user_id="u", role=role, permissions=ROLES[role]))
    require_notify_permission([])  # naming none needs nothing
    if allowed:
        require_notify_permission(["ops"])
    else:
        with pytest.raises(PermissionDeniedError, match="alert:create"):
            require_notify_permission(["ops"])
