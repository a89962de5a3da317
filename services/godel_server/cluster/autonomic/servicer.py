"""AutonomicService: the autonomic policies, and what they would do now (GetRecommendations)."""

from __future__ import annotations

import grpc

from godel.v1 import autonomic_pb2, autonomic_service_pb2, autonomic_service_pb2_grpc
from godel_server.cluster.alerts.manager import AlertManager
from godel_server.cluster.alerts.store import AlertStore
from godel_server.cluster.alerts.validation import (
    DAY,
    MAX_NAME,
    MAX_TEXT,
    check_duration,
    check_name,
    check_request_id,
    check_threshold_condition,
)
from godel_server.cluster.autonomic.cron import Cron, CronError
from godel_server.cluster.autonomic.mapping import action_to_proto, policy_to_proto, to_json
from godel_server.cluster.autonomic.orchestrator import AutonomicOrchestrator
from godel_server.cluster.autonomic.policies import ACTION_TYPE, READINESS, TARGETED, ActionType, Assessment
from godel_server.cluster.autonomic.store import PolicyStore
from godel_server.cluster.collector import MetricsCollector
from godel_server.cluster.models import PolicyRow
from godel_server.runtime.events import set_times, utcnow
from godel_server.runtime.fieldmask import populated, update_paths
from godel_server.runtime.ids import new_id
from godel_server.runtime.validation import Violations

UPDATABLE = ("name", "description", "trigger", "action", "cooldown", "enabled")
DEFAULT_COOLDOWN = 300.0
MAX_DELTA = 100


def check_trigger(v: Violations, field: str, t: autonomic_pb2.PolicyTrigger) -> None:
    kind = t.WhichOneof("kind")
    if kind is None:
        v.add(field, "needs a metric, alert or schedule trigger")
    elif kind == "metric":
        check_threshold_condition(v, f"{field}.metric", t.metric)
    elif kind == "alert":
        check_name(v, f"{field}.alert.rule", t.alert.rule)
    else:
        try:
            Cron.parse(t.schedule.cron)
        except CronError as exc:
            v.add(f"{field}.schedule.cron", str(exc))


def check_action(v: Violations, field: str, a: autonomic_pb2.AutonomicAction) -> None:
    kind = ACTION_TYPE.get(a.type)
    if kind is None:
        v.add(f"{field}.type", f"must be one of {ACTION_TYPE.choices()}")
    elif kind in TARGETED and not a.target:
        v.add(f"{field}.target", "is required: an id or name, or a label in braces such as {team_id}")
    v.max_len(f"{field}.target", a.target, MAX_NAME)
    if not 0 <= a.delta <= MAX_DELTA:
        v.add(f"{field}.delta", f"must be between 0 and {MAX_DELTA} (0: 1)")
    if kind == ActionType.NOTIFY and not a.channel:
        v.add(f"{field}.channel", "is required for notify")
    v.max_len(f"{field}.channel", a.channel, MAX_NAME)
    v.max_len(f"{field}.message", a.message, MAX_TEXT)


def recommendation(a: Assessment) -> autonomic_pb2.Recommendation:
    p = a.proposal
    rec = autonomic_pb2.Recommendation(
        policy_id=p.policy.id,
        policy_name=p.policy.name,
        action=action_to_proto(p.action),
        reason=p.hit.reason,
        state=READINESS.to_proto(a.readiness),
        note=a.plan.note,
        labels=dict(p.hit.labels),
        value=p.hit.value,
    )
    set_times(rec, not_before=a.not_before)
    return rec


class AutonomicServicer(autonomic_service_pb2_grpc.AutonomicServiceServicer):
    def __init__(
        self,
        store: PolicyStore,
        alert_store: AlertStore,
        collector: MetricsCollector,
        alerts: AlertManager,
        orchestrator: AutonomicOrchestrator,
    ) -> None:
        self._store = store
        self._alert_store = alert_store
        self._collector = collector
        self._alerts = alerts
        self._orchestrator = orchestrator

    async def _check_channel(self, v: Violations, field: str, action: autonomic_pb2.AutonomicAction) -> None:
        notify = action.type == autonomic_pb2.AUTONOMIC_ACTION_TYPE_NOTIFY and action.channel
        if notify and not await self._alert_store.channel_names([action.channel]):
            v.add(field, f"no notification channel is named {action.channel!r}")

    async def ListPolicies(
        self, request: autonomic_service_pb2.ListPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> autonomic_service_pb2.ListPoliciesResponse:
        rows, token = await self._store.page(request.page_size, request.page_token)
        return autonomic_service_pb2.ListPoliciesResponse(
            policies=[policy_to_proto(r) for r in rows], next_page_token=token
        )

    async def GetPolicy(
        self, request: autonomic_service_pb2.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> autonomic_pb2.AutonomicPolicy:
        v = Violations()
        check_name(v, "id", request.id)
        v.raise_if_any()
        return policy_to_proto(await self._store.get(request.id))

    async def CreatePolicy(
        self, request: autonomic_service_pb2.CreatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> autonomic_pb2.AutonomicPolicy:
        v = Violations()
        check_request_id(v, request.request_id)
        check_name(v, "name", request.name)
        v.max_len("description", request.description, MAX_TEXT)
        check_trigger(v, "trigger", request.trigger)
        check_action(v, "action", request.action)
        cooldown = check_duration(v, "cooldown", request.cooldown, maximum=DAY)
        v.raise_if_any()
        await self._check_channel(v, "action.channel", request.action)
        v.raise_if_any()
        now = utcnow()
        row = PolicyRow(
            id=new_id(),
            request_id=request.request_id or None,
            name=request.name,
            description=request.description or None,
            trigger=to_json(request.trigger),
            action=to_json(request.action),
            cooldown_seconds=cooldown if request.HasField("cooldown") else DEFAULT_COOLDOWN,
            enabled=not request.disabled,
            builtin=False,
            created_at=now,
            updated_at=now,
        )
        return policy_to_proto(await self._store.create(row))

    async def UpdatePolicy(
        self, request: autonomic_service_pb2.UpdatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> autonomic_pb2.AutonomicPolicy:
        policy = request.policy
        v = Violations()
        check_name(v, "policy.id", policy.id)
        fields = update_paths(
            request.update_mask,
            UPDATABLE,
            default=populated(policy, UPDATABLE),
            nested=("trigger", "action"),
            v=v,
        )
        if "name" in fields:
            check_name(v, "policy.name", policy.name)
        if "description" in fields:
            v.max_len("policy.description", policy.description, MAX_TEXT)
        if "trigger" in fields:
            check_trigger(v, "policy.trigger", policy.trigger)
        if "action" in fields:
            check_action(v, "policy.action", policy.action)
        cooldown = check_duration(v, "policy.cooldown", policy.cooldown, maximum=DAY)
        v.raise_if_any()
        if "action" in fields:
            await self._check_channel(v, "policy.action.channel", policy.action)
            v.raise_if_any()

        def change(row: PolicyRow) -> None:
            if "name" in fields:
                row.name = policy.name
            if "description" in fields:
                row.description = policy.description or None
            if "trigger" in fields:
                row.trigger = to_json(policy.trigger)
            if "action" in fields:
                row.action = to_json(policy.action)
            if "cooldown" in fields:
                row.cooldown_seconds = cooldown
            if "enabled" in fields:
                row.enabled = policy.enabled

        return policy_to_proto(await self._store.update(policy.id, change))

    async def DeletePolicy(
        self, request: autonomic_service_pb2.DeletePolicyRequest, context: grpc.aio.ServicerContext
    ) -> autonomic_service_pb2.DeletePolicyResponse:
        v = Violations()
        check_name(v, "id", request.id)
        v.raise_if_any()
        await self._store.delete(request.id)
        return autonomic_service_pb2.DeletePolicyResponse()

    async def GetRecommendations(
        self, request: autonomic_service_pb2.GetRecommendationsRequest, context: grpc.aio.ServicerContext
    ) -> autonomic_service_pb2.GetRecommendationsResponse:
        snapshot = await self._collector.collect()
        firing, _ = await self._alerts.stored_firing()
        assessments = await self._orchestrator.recommendations(snapshot, firing)
        return autonomic_service_pb2.GetRecommendationsResponse(
            recommendations=[recommendation(a) for a in assessments], dry_run=self._orchestrator.dry_run
        )
