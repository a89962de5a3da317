"""AlertService: alert rules, alerts and their history, silences and notification channels, over
the AlertStore (the AlertManager evaluates what is stored)."""

from __future__ import annotations

from datetime import timedelta

import grpc

from godel.v1 import alert_pb2, alert_service_pb2, alert_service_pb2_grpc
from godel_server.cluster.alerts.kinds import ALERT_STATE, CHANNEL_TYPE, SEVERITY, ChannelType, Severity
from godel_server.cluster.alerts.mapping import (
    alert_to_proto,
    channel_to_proto,
    rule_to_proto,
    silence_to_proto,
)
from godel_server.cluster.alerts.store import AlertStore
from godel_server.cluster.alerts.validation import (
    DAY,
    MAX_NAME,
    MAX_TEXT,
    check_channel_names,
    check_duration,
    check_labels,
    check_name,
    check_openclaw_channel,
    check_request_id,
    check_threshold_condition,
    check_webhook_url,
)
from godel_server.cluster.models import AlertRuleRow, ChannelRow, SilenceRow
from godel_server.cluster.snapshot import OPERATOR
from godel_server.runtime.context import current_caller
from godel_server.runtime.events import utcnow
from godel_server.runtime.fieldmask import populated, update_paths
from godel_server.runtime.ids import new_id
from godel_server.runtime.validation import Violations, check_id

UPDATABLE = (
    "name",
    "description",
    "condition",
    "severity",
    "channels",
    "for_duration",
    "interval",
    "enabled",
)
MAX_SILENCE = timedelta(days=365)


class AlertServicer(alert_service_pb2_grpc.AlertServiceServicer):
    def __init__(self, store: AlertStore) -> None:
        self._store = store

    async def _check_channels_exist(self, v: Violations, field: str, names: list[str]) -> None:
        missing = [n for n in names if n not in await self._store.channel_names(names)]
        for name in missing:
            v.add(field, f"no notification channel is named {name[:MAX_NAME]!r}")

    # ---- rules ------------------------------------------------------------------------------
    async def ListAlertRules(
        self, request: alert_service_pb2.ListAlertRulesRequest, context: grpc.aio.ServicerContext
    ) -> alert_service_pb2.ListAlertRulesResponse:
        rows, token = await self._store.rules_page(request.page_size, request.page_token)
        return alert_service_pb2.ListAlertRulesResponse(
            rules=[rule_to_proto(r) for r in rows], next_page_token=token
        )

    async def GetAlertRule(
        self, request: alert_service_pb2.GetAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alert_pb2.AlertRule:
        v = Violations()
        check_name(v, "id", request.id)
        v.raise_if_any()
        return rule_to_proto(await self._store.rule(request.id))

    async def CreateAlertRule(
        self, request: alert_service_pb2.CreateAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alert_pb2.AlertRule:
        v = Violations()
        check_request_id(v, request.request_id)
        check_name(v, "name", request.name)
        v.max_len("description", request.description, MAX_TEXT)
        if not request.HasField("condition"):
            v.add("condition", "is required")
        else:
            check_threshold_condition(v, "condition", request.condition)
        check_channel_names(v, "channels", list(request.channels))
        for_seconds = check_duration(v, "for_duration", request.for_duration, maximum=7 * DAY)
        interval = check_duration(v, "interval", request.interval, maximum=DAY)
        v.raise_if_any()
        await self._check_channels_exist(v, "channels", list(request.channels))
        v.raise_if_any()
        now = utcnow()
        c = request.condition
        row = AlertRuleRow(
            id=new_id(),
            request_id=request.request_id or None,
            name=request.name,
            description=request.description or None,
            metric=c.metric,
            operator=OPERATOR.name(c.operator),
            threshold=c.threshold,
            labels=dict(c.labels),
            severity=SEVERITY.get(request.severity) or Severity.WARNING,
            channels=list(request.channels),
            for_seconds=for_seconds,
            interval_seconds=interval,
            enabled=not request.disabled,
            builtin=False,
            created_at=now,
            updated_at=now,
        )
        return rule_to_proto(await self._store.create_rule(row))

    async def UpdateAlertRule(
        self, request: alert_service_pb2.UpdateAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alert_pb2.AlertRule:
        rule = request.rule
        v = Violations()
        check_name(v, "rule.id", rule.id)
        fields = update_paths(
            request.update_mask, UPDATABLE, default=populated(rule, UPDATABLE), nested=("condition",), v=v
        )
        if "name" in fields:
            check_name(v, "rule.name", rule.name)
        if "description" in fields:
            v.max_len("rule.description", rule.description, MAX_TEXT)
        if "condition" in fields:
            check_threshold_condition(v, "rule.condition", rule.condition)
        if "severity" in fields and SEVERITY.get(rule.severity) is None:
            v.add("rule.severity", "must be INFO, WARNING or CRITICAL")
        if "channels" in fields:
            check_channel_names(v, "rule.channels", list(rule.channels))
        for_seconds = check_duration(v, "rule.for_duration", rule.for_duration, maximum=7 * DAY)
        interval = check_duration(v, "rule.interval", rule.interval, maximum=DAY)
        v.raise_if_any()
        if "channels" in fields:
            await self._check_channels_exist(v, "rule.channels", list(rule.channels))
            v.raise_if_any()

        def change(row: AlertRuleRow) -> None:
            if "name" in fields:
                row.name = rule.name
            if "description" in fields:
                row.description = rule.description or None
            if "condition" in fields:
                c = rule.condition
                row.metric, row.operator, row.threshold = c.metric, OPERATOR.name(c.operator), c.threshold
                row.labels = dict(c.labels)
            if "severity" in fields:
                row.severity = SEVERITY.name(rule.severity)
            if "channels" in fields:
                row.channels = list(rule.channels)
            if "for_duration" in fields:
                row.for_seconds = for_seconds
            if "interval" in fields:
                row.interval_seconds = interval
            if "enabled" in fields:
                row.enabled = rule.enabled

        return rule_to_proto(await self._store.update_rule(rule.id, change))

    async def DeleteAlertRule(
        self, request: alert_service_pb2.DeleteAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alert_service_pb2.DeleteAlertRuleResponse:
        v = Violations()
        check_name(v, "id", request.id)
        v.raise_if_any()
        await self._store.delete_rule(request.id)
        return alert_service_pb2.DeleteAlertRuleResponse()

    # ---- alerts -----------------------------------------------------------------------------
    async def ListAlerts(
        self, request: alert_service_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> alert_service_pb2.ListAlertsResponse:
        v = Violations()
        states = [ALERT_STATE.get(s) for s in request.state]
        if any(s is None for s in states):
            v.add("state", "must list FIRING or RESOLVED")
        v.uuid("rule_id", request.rule_id)
        v.raise_if_any()
        rows, token = await self._store.alerts_page(
            [s for s in states if s], request.rule_id, request.page_size, request.page_token
        )
        return alert_service_pb2.ListAlertsResponse(
            alerts=[alert_to_proto(r) for r in rows], next_page_token=token
        )

    # ---- silences ---------------------------------------------------------------------------
    async def ListSilences(
        self, request: alert_service_pb2.ListSilencesRequest, context: grpc.aio.ServicerContext
    ) -> alert_service_pb2.ListSilencesResponse:
        now = utcnow()
        rows, token = await self._store.silences_page(
            request.include_expired, now, request.page_size, request.page_token
        )
        return alert_service_pb2.ListSilencesResponse(
            silences=[silence_to_proto(r, now) for r in rows], next_page_token=token
        )

    async def CreateSilence(
        self, request: alert_service_pb2.CreateSilenceRequest, context: grpc.aio.ServicerContext
    ) -> alert_pb2.Silence:
        v = Violations()
        check_request_id(v, request.request_id)
        check_labels(v, "matchers", request.matchers, required=True)
        v.max_len("comment", request.comment, MAX_TEXT)
        now = utcnow()
        starts = request.starts_at.ToDatetime(tzinfo=now.tzinfo) if request.HasField("starts_at") else now
        if request.HasField("ends_at") == request.HasField("duration"):
            v.add("ends_at", "give ends_at or duration (one of them)")
            ends = starts
        elif request.HasField("ends_at"):
            ends = request.ends_at.ToDatetime(tzinfo=now.tzinfo)
        else:
            ends = starts + timedelta(
                seconds=check_duration(v, "duration", request.duration, maximum=365 * DAY)
            )
        if ends <= starts or ends <= now:
            v.add("ends_at", "must be after starts_at and in the future")
        elif ends - starts > MAX_SILENCE:
            v.add("ends_at", "a silence lasts at most a year")
        v.raise_if_any()
        caller = current_caller()
        row = SilenceRow(
            id=new_id(),
            request_id=request.request_id or None,
            matchers=dict(request.matchers),
            starts_at=starts,
            ends_at=ends,
            comment=request.comment or None,
            created_by=caller.user_id if caller else None,
            created_at=now,
        )
        return silence_to_proto(await self._store.create_silence(row), utcnow())

    async def DeleteSilence(
        self, request: alert_service_pb2.DeleteSilenceRequest, context: grpc.aio.ServicerContext
    ) -> alert_service_pb2.DeleteSilenceResponse:
        check_id("id", request.id)
        await self._store.expire_silence(request.id)
        return alert_service_pb2.DeleteSilenceResponse()

    # ---- channels ---------------------------------------------------------------------------
    async def ListNotificationChannels(
        self, request: alert_service_pb2.ListNotificationChannelsRequest, context: grpc.aio.ServicerContext
    ) -> alert_service_pb2.ListNotificationChannelsResponse:
        rows, token = await self._store.channels_page(request.page_size, request.page_token)
        return alert_service_pb2.ListNotificationChannelsResponse(
            channels=[channel_to_proto(r) for r in rows], next_page_token=token
        )

    async def CreateNotificationChannel(
        self, request: alert_service_pb2.CreateNotificationChannelRequest, context: grpc.aio.ServicerContext
    ) -> alert_pb2.NotificationChannel:
        v = Violations()
        check_request_id(v, request.request_id)
        check_name(v, "name", request.name)
        kind = CHANNEL_TYPE.get(request.type)
        if kind is None:
            v.add("type", "must be WEBHOOK, EVENT or OPENCLAW")
        elif kind == ChannelType.WEBHOOK:
            check_webhook_url(v, "url", request.url)
        elif kind == ChannelType.OPENCLAW:
            check_openclaw_channel(v, request)
        elif request.url or request.secret:
            v.add("url", "only a webhook or OpenClaw channel has a url and a secret")
        if kind != ChannelType.OPENCLAW:
            for field in ("openclaw_channel", "target"):
                if getattr(request, field):
                    v.add(field, "only an OpenClaw channel has one")
        v.max_len("secret", request.secret, MAX_NAME)
        v.raise_if_any()
        assert kind is not None
        row = ChannelRow(
            id=new_id(),
            request_id=request.request_id or None,
            name=request.name,
            type=kind,
            url=request.url or None,
            secret=request.secret or None,
            created_at=utcnow(),
            openclaw_channel=request.openclaw_channel or None,
            target=request.target or None,
        )
        return channel_to_proto(await self._store.create_channel(row))

    async def DeleteNotificationChannel(
        self, request: alert_service_pb2.DeleteNotificationChannelRequest, context: grpc.aio.ServicerContext
    ) -> alert_service_pb2.DeleteNotificationChannelResponse:
        v = Violations()
        check_name(v, "id", request.id)
        v.raise_if_any()
        await self._store.delete_channel(request.id)
        return alert_service_pb2.DeleteNotificationChannelResponse()
