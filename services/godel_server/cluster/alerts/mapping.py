"""Alert rows to and from the contract's messages and the domain's objects."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import duration_pb2

from godel.v1 import alert_pb2
from godel_server.cluster.alerts.kinds import ALERT_STATE, CHANNEL_TYPE, SEVERITY
from godel_server.cluster.alerts.notify import Channel
from godel_server.cluster.alerts.rules import Rule, SilenceWindow
from godel_server.cluster.models import AlertRow, AlertRuleRow, ChannelRow, SilenceRow
from godel_server.cluster.snapshot import OPERATOR, Condition
from godel_server.runtime.events import set_times


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def condition_of(row: AlertRuleRow) -> Condition:
    return Condition(row.metric, row.operator, row.threshold, dict(row.labels or {}))


def rule_of(row: AlertRuleRow, default_interval: float) -> Rule:
    return Rule(
        row.id,
        row.name,
        condition_of(row),
        row.severity,
        for_seconds=row.for_seconds,
        interval_seconds=max(row.interval_seconds, default_interval),
        channels=tuple(row.channels or ()),
    )


def rule_to_proto(row: AlertRuleRow) -> alert_pb2.AlertRule:
    rule = alert_pb2.AlertRule(
        id=row.id,
        name=row.name,
        description=row.description or "",
        condition=alert_pb2.AlertCondition(
            metric=row.metric,
            operator=OPERATOR.to_proto(row.operator),
            threshold=row.threshold,
            labels=dict(row.labels or {}),
        ),
        severity=SEVERITY.to_proto(row.severity),
        channels=list(row.channels or ()),
        for_duration=seconds(row.for_seconds),
        interval=seconds(row.interval_seconds),
        enabled=row.enabled,
        builtin=row.builtin,
    )
    set_times(rule, created_at=row.created_at, updated_at=row.updated_at)
    return rule


def alert_to_proto(row: AlertRow) -> alert_pb2.Alert:
    alert = alert_pb2.Alert(
        id=row.id,
        rule_id=row.rule_id,
        rule_name=row.rule_name,
        severity=SEVERITY.to_proto(row.severity),
        state=ALERT_STATE.to_proto(row.state),
        labels=dict(row.labels or {}),
        value=row.value,
        summary=row.summary,
        silenced=row.silenced,
        notified_channels=list(row.notified_channels or ()),
    )
    set_times(alert, active_at=row.active_at, fired_at=row.fired_at, resolved_at=row.resolved_at)
    return alert


def silence_of(row: SilenceRow) -> SilenceWindow:
    return SilenceWindow(row.id, dict(row.matchers or {}), row.starts_at, row.ends_at)


def silence_to_proto(row: SilenceRow, now: datetime) -> alert_pb2.Silence:
    silence = alert_pb2.Silence(
        id=row.id,
        matchers=dict(row.matchers or {}),
        comment=row.comment or "",
        created_by=row.created_by or "",
        active=silence_of(row).active(now),
    )
    set_times(silence, starts_at=row.starts_at, ends_at=row.ends_at, created_at=row.created_at)
    return silence


def channel_of(row: ChannelRow) -> Channel:
    return Channel(
        row.id,
        row.name,
        row.type,
        row.url or "",
        row.secret or "",
        row.openclaw_channel or "",
        row.target or "",
    )


def channel_to_proto(row: ChannelRow) -> alert_pb2.NotificationChannel:
    channel = alert_pb2.NotificationChannel(
        id=row.id,
        name=row.name,
        type=CHANNEL_TYPE.to_proto(row.type),
        url=row.url or "",
        has_secret=bool(row.secret),
        openclaw_channel=row.openclaw_channel or "",
        target=row.target or "",
    )
    set_times(channel, created_at=row.created_at)
    return channel
