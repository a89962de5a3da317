"""Policy rows to and from the contract's messages and the domain's objects. A row keeps its trigger
and action as their proto JSON: the contract is their schema."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import json_format

from godel.v1 import autonomic_pb2
from godel_server.cluster.alerts.mapping import seconds
from godel_server.cluster.autonomic.cron import Cron
from godel_server.cluster.autonomic.policies import (
    ACTION_TYPE,
    Action,
    AlertTrigger,
    DefaultPolicy,
    MetricTrigger,
    Policy,
    ScheduleTrigger,
    Trigger,
)
from godel_server.cluster.models import PolicyRow
from godel_server.cluster.snapshot import OPERATOR, Condition
from godel_server.runtime.events import set_times
from godel_server.runtime.ids import new_id


def trigger_proto(row: PolicyRow) -> autonomic_pb2.PolicyTrigger:
    return json_format.ParseDict(row.trigger or {}, autonomic_pb2.PolicyTrigger(), ignore_unknown_fields=True)


def action_proto(row: PolicyRow) -> autonomic_pb2.AutonomicAction:
    return json_format.ParseDict(
        row.action or {}, autonomic_pb2.AutonomicAction(), ignore_unknown_fields=True
    )


def trigger_of(t: autonomic_pb2.PolicyTrigger) -> Trigger:
    """The domain trigger of a checked PolicyTrigger (ValueError for one that names nothing)."""
    kind = t.WhichOneof("kind")
    if kind == "metric":
        m = t.metric
        return MetricTrigger(Condition(m.metric, OPERATOR.name(m.operator), m.threshold, dict(m.labels)))
    if kind == "alert":
        return AlertTrigger(t.alert.rule)
    if kind == "schedule":
        return ScheduleTrigger(Cron.parse(t.schedule.cron), t.schedule.cron)
    raise ValueError("the trigger is empty")


def action_of(a: autonomic_pb2.AutonomicAction) -> Action:
    return Action(ACTION_TYPE.name(a.type), a.target, a.delta or 1, a.channel, a.message)


def action_to_proto(action: Action) -> autonomic_pb2.AutonomicAction:
    return autonomic_pb2.AutonomicAction(
        type=ACTION_TYPE.to_proto(action.type),
        target=action.target,
        delta=action.delta,
        channel=action.channel,
        message=action.message,
    )


def policy_of(row: PolicyRow) -> Policy:
    return Policy(
        row.id, row.name, trigger_of(trigger_proto(row)), action_of(action_proto(row)), row.cooldown_seconds
    )


def policy_to_proto(row: PolicyRow) -> autonomic_pb2.AutonomicPolicy:
    policy = autonomic_pb2.AutonomicPolicy(
        id=row.id,
        name=row.name,
        description=row.description or "",
        trigger=trigger_proto(row),
        action=action_proto(row),
        cooldown=seconds(row.cooldown_seconds),
        enabled=row.enabled,
        builtin=row.builtin,
    )
    set_times(policy, created_at=row.created_at, updated_at=row.updated_at)
    return policy


def to_json(message: autonomic_pb2.PolicyTrigger | autonomic_pb2.AutonomicAction) -> dict[str, object]:
    return json_format.MessageToDict(message)


def default_policy_row(default: DefaultPolicy, now: datetime) -> PolicyRow:
    c = default.condition
    trigger = autonomic_pb2.PolicyTrigger(
        metric=autonomic_pb2.MetricTrigger(
            metric=c.metric,
            operator=OPERATOR.to_proto(c.operator),
            threshold=c.threshold,
            labels=dict(c.labels),
        )
    )
    return PolicyRow(
        id=new_id(),
        name=default.name,
        description=default.description,
        trigger=to_json(trigger),
        action=to_json(action_to_proto(default.action)),
        cooldown_seconds=default.cooldown_seconds,
        enabled=True,
        builtin=True,
        created_at=now,
        updated_at=now,
    )
