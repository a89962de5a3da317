"""Writes the Grafana dashboards of deploy/observability/grafana/ (spec §9.4): fleet overview,
agents, teams and tasks, event plane, API and gateway, cost. Each panel is a PromQL query over the
metrics Godel's processes export (tests/unit/test_observability.py checks every one). Run after
changing a panel: `.venv/bin/python tools/observability/dashboards.py`; the test fails when the
committed JSON differs from what this writes."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[2] / "deploy" / "observability" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    kind: str = "timeseries"
    unit: str = "short"
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("godel",))


def q(expr: str, legend: str = "") -> tuple[str, str]:
    return (expr, legend)


def per(labels: str, function: str, metric: str, legend: str = "") -> tuple[str, str]:
    """`sum by (labels) (function(metric[$__rate_interval]))`, one series per label set."""
    names = [label.strip() for label in labels.split(",")]
    shown = legend or " ".join(f"{{{{{name}}}}}" for name in names)
    return q(f"sum by ({labels}) ({function}({metric}[$__rate_interval]))", shown)


def quantiles(bucket: str, *levels: float, by: str = "le", legend: str = "") -> tuple[tuple[str, str], ...]:
    """histogram_quantile of a histogram's `_bucket` series (with its selector) at each level."""
    return tuple(
        q(
            f"histogram_quantile({level}, sum by ({by}) (rate({bucket}[$__rate_interval])))",
            legend or f"p{round(level * 100)}",
        )
        for level in levels
    )


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return Panel(title, (q(expr),), kind="stat", unit=unit, description=description, width=6)


UNARY = 'method!~".*/(Subscribe|Stream|Watch|Connect|Tail).*"'
SERVER_ERRORS = 'code=~"INTERNAL|UNKNOWN|DATA_LOSS|UNAVAILABLE|DEADLINE_EXCEEDED"'
API_BUCKETS = f"godel_api_request_duration_seconds_bucket{{{UNARY}}}"
PENDING = 'max(godel_agents_by_status{status="pending"})'


def share(part: str, whole: str, window: str = "$__rate_interval") -> str:
    return f"sum(rate({part}[{window}])) / sum(rate({whole}[{window}]))"


DASHBOARDS = (
    Dashboard(
        "godel-fleet",
        "Godel / Fleet overview",
        "Agents, teams, workers, errors and latency of the whole installation at a glance.",
        (
            stat("Agents running", "max(godel_agents_active)"),
            stat("Agents pending", PENDING),
            stat("Workers connected", "sum(godel_workers_connected)"),
            stat("Free run slots", "sum(godel_worker_free_capacity)"),
            Panel("Agents by status", (q("max by (status) (godel_agents_by_status)", "{{status}}"),)),
            Panel("Teams by status", (q("max by (status) (godel_teams_by_status)", "{{status}}"),)),
            Panel("API requests by code", (per("code", "rate", "godel_api_requests_total"),), unit="reqps"),
            Panel("API latency (unary, p50 / p99)", quantiles(API_BUCKETS, 0.5, 0.99), unit="s"),
            Panel("Runs ended by outcome", (per("outcome", "increase", "godel_agent_runs_total"),)),
            Panel("Memory", (q("godel_memory_usage_bytes", "{{job}} {{instance}}"),), unit="bytes"),
        ),
    ),
    Dashboard(
        "godel-agents",
        "Godel / Agents",
        "Agent lifecycle, runs, workers, stuck agents and guardrails.",
        (
            stat("Agents created (range)", "sum(increase(godel_agents_total[$__range]))"),
            stat("Running", "max(godel_agents_active)"),
            stat(
                "Run success rate (range)",
                share('godel_agent_runs_total{outcome="succeeded"}', "godel_agent_runs_total", "$__range"),
                unit="percentunit",
            ),
            stat("Longest idle executing agent", "max(godel_agent_idle_seconds)", unit="s"),
            Panel("Transitions", (per("to", "rate", "godel_agent_transitions_total"),), unit="ops"),
            Panel(
                "Agent duration (p50 / p90, ended agents)",
                quantiles("godel_agent_duration_seconds_bucket", 0.5, 0.9),
                unit="s",
            ),
            Panel(
                "Worker slots",
                (
                    q("sum(godel_worker_capacity)", "capacity"),
                    q("sum(godel_worker_runs_active)", "runs active"),
                    q("sum(godel_worker_free_capacity)", "free (agent service's view)"),
                ),
            ),
            Panel(
                "Runs started by runtime",
                (per("runtime", "rate", "godel_worker_runs_started_total"),),
                unit="ops",
            ),
            Panel(
                "Idle executing agents (top 10)",
                (q("topk(10, max by (agent_id) (godel_agent_idle_seconds))", "{{agent_id}}"),),
                unit="s",
            ),
            Panel("Safety blocks", (per("rule, action", "increase", "godel_safety_blocks_total"),)),
            Panel("Log lines dropped", (per("reason", "increase", "godel_agent_log_lines_dropped_total"),)),
        ),
    ),
    Dashboard(
        "godel-teams",
        "Godel / Teams and tasks",
        "Teams, their members, the task queue and completion.",
        (
            stat("Teams created (range)", "sum(increase(godel_teams_total[$__range]))"),
            stat("Completion rate", "max(godel_team_completion_rate)", unit="percentunit"),
            stat("Tasks waiting", "sum(max by (team_id) (godel_queue_depth))"),
            stat("Team members live", "sum(max by (team_id) (godel_team_agents))"),
            Panel("Teams by status", (q("max by (status) (godel_teams_by_status)", "{{status}}"),)),
            Panel("Queue depth per team", (q("max by (team_id) (godel_queue_depth)", "{{team_id}}"),)),
            Panel("Members per team", (q("max by (team_id) (godel_team_agents)", "{{team_id}}"),)),
        ),
    ),
    Dashboard(
        "godel-events",
        "Godel / Event plane",
        "Outbox, Kafka, consumers, the event store and live subscribers.",
        (
            stat("Events stored / s", "sum(rate(godel_events_total[$__rate_interval]))", unit="ops"),
            stat("Live subscriptions", "sum(godel_event_subscribers)"),
            stat("WebSocket connections", "sum(godel_event_websocket_connections)"),
            stat("Dead letters (range)", "sum(increase(godel_dead_letters_total[$__range]))"),
            Panel(
                "Published to Kafka by topic",
                (per("topic", "rate", "godel_outbox_published_total"),),
                unit="ops",
            ),
            Panel("Stored by topic", (per("topic", "rate", "godel_events_total"),), unit="ops"),
            Panel(
                "Consumed by group",
                (
                    per("group", "rate", "godel_events_consumed_total"),
                    per("group", "rate", "godel_events_duplicate_total", "{{group}} duplicates"),
                ),
                unit="ops",
            ),
            Panel(
                "Outbox",
                (
                    q("max by (job, instance) (godel_outbox_pending)", "pending {{instance}}"),
                    per("job", "rate", "godel_outbox_errors_total", "send errors {{job}}"),
                ),
            ),
            Panel(
                "Quarantined",
                (
                    per("source", "increase", "godel_dead_letters_total"),
                    per("group", "increase", "godel_events_undecodable_total", "undecodable {{group}}"),
                ),
            ),
            Panel(
                "Dropped for slow subscribers",
                (per("strategy", "rate", "godel_event_subscriber_dropped_total"),),
                unit="ops",
            ),
        ),
    ),
    Dashboard(
        "godel-api",
        "Godel / API and gateway",
        "Every gRPC call the services answer (from the gateway's REST and gRPC clients, and between "
        "services), by method and code, and calls to federation peers.",
        (
            stat("Requests / s", "sum(rate(godel_api_requests_total[$__rate_interval]))", unit="reqps"),
            stat(
                "Server errors",
                share(f"godel_api_requests_total{{{SERVER_ERRORS}}}", "godel_api_requests_total"),
                unit="percentunit",
            ),
            Panel("p99 latency (unary)", quantiles(API_BUCKETS, 0.99), kind="stat", unit="s", width=6),
            stat("Methods served", 'count(max by (method) (godel_grpc_method_info{implemented="true"}))'),
            Panel(
                "Top methods",
                (
                    q(
                        "topk(10, sum by (method) (rate(godel_api_requests_total[$__rate_interval])))",
                        "{{method}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Errors by method and code",
                (per("method, code", "rate", 'godel_api_requests_total{code!="OK"}'),),
                unit="reqps",
            ),
            Panel(
                "p99 latency by method (unary)",
                quantiles(API_BUCKETS, 0.99, by="le, method", legend="{{method}}"),
                unit="s",
            ),
            Panel(
                "Federation calls by peer and code",
                (per("peer, code", "rate", "godel_federation_requests_total"),),
                unit="reqps",
            ),
            Panel("Cluster health", (q("max by (cluster) (godel_cluster_health_score)", "{{cluster}}"),)),
            Panel("Agents per cluster", (q("max by (cluster) (godel_cluster_agents)", "{{cluster}}"),)),
        ),
    ),
    Dashboard(
        "godel-cost",
        "Godel / Cost",
        "What agents spend: dollars from token usage per model, and the tokens behind them.",
        (
            stat(
                "Spend (stored agents)", "sum(max by (model) (godel_agent_cost_dollars))", unit="currencyUSD"
            ),
            stat("Tokens / s", "sum(rate(godel_agent_tokens_total[$__rate_interval]))"),
            Panel(
                "Spend per model",
                (q("max by (model) (godel_agent_cost_dollars)", "{{model}}"),),
                unit="currencyUSD",
            ),
            Panel("Tokens per model and kind", (per("model, kind", "rate", "godel_agent_tokens_total"),)),
        ),
    ),
)


def _panel(panel: Panel, index: int, x: int, y: int) -> dict[str, Any]:
    height = 4 if panel.kind == "stat" else 8
    return {
        "id": index,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    for index, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + row_height
            row_height = 0
        item = _panel(panel, index, x, y)
        panels.append(item)
        x += panel.width
        row_height = max(row_height, item["gridPos"]["h"])
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{d.uid}.json": json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
