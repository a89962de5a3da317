"""``client.alerts``: the AlertManager of the mesh (AlertService): alert rules, the alerts they fire
and their history, silences and notification channels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from google.protobuf import duration_pb2

from godel.v1 import alert_pb2, alert_service_pb2
from godel_client.methods import Mode, SubClient, by_id, paged, unary


def _duration(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)
    return duration


def _rules(page_size: int = 100) -> alert_service_pb2.ListAlertRulesRequest:
    """Every alert rule (the spec's defaults first), fetched page by page."""
    return alert_service_pb2.ListAlertRulesRequest(page_size=page_size)


def _create_rule(
    name: str,
    metric: str,
    operator: alert_pb2.ComparisonOperator.ValueType,
    threshold: float,
    *,
    labels: Mapping[str, str] | None = None,
    severity: alert_pb2.AlertSeverity.ValueType = alert_pb2.ALERT_SEVERITY_WARNING,
    for_duration: timedelta | None = None,
    interval: timedelta | None = None,
    channels: Iterable[str] = (),
    description: str = "",
) -> alert_service_pb2.CreateAlertRuleRequest:
    """Creates a rule: an alert fires for each series of ``metric`` whose labels include ``labels``
    and that compares with ``threshold`` by ``operator`` for ``for_duration``."""
    return alert_service_pb2.CreateAlertRuleRequest(
        name=name,
        description=description,
        condition=alert_pb2.AlertCondition(
            metric=metric, operator=operator, threshold=threshold, labels=dict(labels or {})
        ),
        severity=severity,
        channels=list(channels),
        for_duration=_duration(for_duration),
        interval=_duration(interval),
    )


def _alerts(
    *, states: Iterable[alert_pb2.AlertState.ValueType] = (), rule_id: str = "", page_size: int = 100
) -> alert_service_pb2.ListAlertsRequest:
    """Alerts, newest first (``states``: only FIRING, the active ones, or RESOLVED, the history)."""
    return alert_service_pb2.ListAlertsRequest(state=list(states), rule_id=rule_id, page_size=page_size)


def _silences(
    *, include_expired: bool = False, page_size: int = 100
) -> alert_service_pb2.ListSilencesRequest:
    """The silences in force or to come (``include_expired``: also those that ended)."""
    return alert_service_pb2.ListSilencesRequest(include_expired=include_expired, page_size=page_size)


def _silence(
    matchers: Mapping[str, str], duration: timedelta, *, comment: str = ""
) -> alert_service_pb2.CreateSilenceRequest:
    """Silences the alerts whose labels match ``matchers`` for ``duration`` from now: they still
    fire and resolve, but notify no channel."""
    return alert_service_pb2.CreateSilenceRequest(
        matchers=dict(matchers), duration=_duration(duration), comment=comment
    )


def _channels(page_size: int = 100) -> alert_service_pb2.ListNotificationChannelsRequest:
    """The notification channels (never a webhook's secret)."""
    return alert_service_pb2.ListNotificationChannelsRequest(page_size=page_size)


def _create_channel(
    name: str, url: str = "", *, secret: str = "", openclaw_channel: str = "", target: str = ""
) -> alert_service_pb2.CreateNotificationChannelRequest:
    """Creates a channel: a webhook POSTed to at ``url`` (signed with ``secret`` when given); with
    ``openclaw_channel``, a message through the OpenClaw Gateway at ``url`` (``secret``: its token)
    to ``target`` on that chat channel (e.g. "irc", "#alerts"); without a url, one that sends
    ``system:notify`` events."""
    if openclaw_channel:
        kind = alert_pb2.CHANNEL_TYPE_OPENCLAW
    else:
        kind = alert_pb2.CHANNEL_TYPE_WEBHOOK if url else alert_pb2.CHANNEL_TYPE_EVENT
    return alert_service_pb2.CreateNotificationChannelRequest(
        name=name, type=kind, url=url, secret=secret, openclaw_channel=openclaw_channel, target=target
    )


class Alerts(SubClient[Mode]):
    """Alert rules, alerts, silences and notification channels."""

    SERVICE = alert_service_pb2.DESCRIPTOR.services_by_name["AlertService"]

    rules = paged("ListAlertRules", _rules, alert_service_pb2.ListAlertRulesResponse, lambda page: page.rules)
    get_rule = unary("GetAlertRule", by_id(alert_service_pb2.GetAlertRuleRequest), alert_pb2.AlertRule)
    create_rule = unary("CreateAlertRule", _create_rule, alert_pb2.AlertRule)
    delete_rule = unary(
        "DeleteAlertRule",
        by_id(alert_service_pb2.DeleteAlertRuleRequest),
        alert_service_pb2.DeleteAlertRuleResponse,
    )
    list = paged("ListAlerts", _alerts, alert_service_pb2.ListAlertsResponse, lambda page: page.alerts)
    silences = paged(
        "ListSilences", _silences, alert_service_pb2.ListSilencesResponse, lambda page: page.silences
    )
    silence = unary("CreateSilence", _silence, alert_pb2.Silence)
    unsilence = unary(
        "DeleteSilence",
        by_id(alert_service_pb2.DeleteSilenceRequest),
        alert_service_pb2.DeleteSilenceResponse,
    )
    channels = paged(
        "ListNotificationChannels",
        _channels,
        alert_service_pb2.ListNotificationChannelsResponse,
        lambda page: page.channels,
    )
    create_channel = unary("CreateNotificationChannel", _create_channel, alert_pb2.NotificationChannel)
    delete_channel = unary(
        "DeleteNotificationChannel",
        by_id(alert_service_pb2.DeleteNotificationChannelRequest),
        alert_service_pb2.DeleteNotificationChannelResponse,
    )
