"""The JSON summaries of `GET /api/v1/metrics/agents|teams|system` (SystemService.GetAgentMetrics,
GetTeamsMetrics, GetSystemMetrics), read from one Snapshot of the services' metrics: the figures
are those Prometheus would show, summed over their series."""

from __future__ import annotations

from typing import Any

from godel.v1 import system_service_pb2
from godel_server.cluster.collector import FAILURE_RATE
from godel_server.cluster.snapshot import SERVICE_LABEL, Snapshot
from godel_server.runtime.events import to_struct
from godel_server.runtime.topology import ROLES


def agent_metrics(s: Snapshot) -> system_service_pb2.GetAgentMetricsResponse:
    by_status = {k: int(v) for k, v in s.by_label("godel_agents_by_status", "status").items()}
    cost = s.by_label("godel_agent_cost_dollars", "model")
    return system_service_pb2.GetAgentMetricsResponse(
        total=sum(by_status.values()),
        by_status=by_status,
        total_cost_usd=sum(cost.values()),
        active=int(s.sum("godel_agents_active")),
        cost_by_model=cost,
        failure_rate_5m=s.sum(FAILURE_RATE),
    )


def teams_metrics(s: Snapshot) -> system_service_pb2.GetTeamsMetricsResponse:
    by_status = {k: int(v) for k, v in s.by_label("godel_teams_by_status", "status").items()}
    return system_service_pb2.GetTeamsMetricsResponse(
        total=sum(by_status.values()),
        by_status=by_status,
        completion_rate=s.sum("godel_team_completion_rate"),
        queue_depth=int(s.sum("godel_queue_depth")),
        agents=int(s.sum("godel_team_agents")),
    )


def _service(s: Snapshot, role: str) -> dict[str, Any]:
    return {
        "up": role in s.answered,
        "memoryBytes": s.sum("godel_memory_usage_bytes", **{SERVICE_LABEL: role}),
        "apiRequests": s.sum("godel_api_requests_total", **{SERVICE_LABEL: role}),
    }


def system_metrics(s: Snapshot) -> system_service_pb2.GetSystemMetricsResponse:
    ratios = [x.value for x in s.series("godel_memory_usage_ratio")]
    figures: dict[str, Any] = {
        "services": {role: _service(s, role) for role in ROLES},
        "hostMemoryRatio": max(ratios, default=0.0),
        "eventsStored": s.sum("godel_events_total"),
        "outboxPending": s.sum("godel_outbox_pending"),
        "workersConnected": s.sum("godel_workers_connected"),
        "workerFreeSlots": s.sum("godel_worker_free_capacity"),
        "queueDepth": s.sum("godel_queue_depth"),
        "alertsFiring": s.by_label("godel_alerts_firing", "severity"),
        "clusters": {
            name: {"healthScore": score, "agents": s.sum("godel_cluster_agents", cluster=name)}
            for name, score in s.by_label("godel_cluster_health_score", "cluster").items()
        },
    }
    return system_service_pb2.GetSystemMetricsResponse(figures=to_struct(figures))
