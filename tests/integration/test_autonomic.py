"""The autonomic loop on a real mesh (spec §4.3, §9.1): the spec's metrics and their JSON summaries,
an alert rule that fires after its `for` duration and resolves (a webhook gets both), a silence that
keeps it from notifying, the default policy that restarts a stuck agent, and an autoscaling team
that grows under a queue backlog and shrinks after it, each decision an event with its reason and
the cooldowns held. One mesh of its own, whose loop runs every half second."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningMesh, godel_cli, running_mesh
from tests.integration.team_helpers import ok, post_backlog_rule, start_team
from tests.waits import wait_for

LOOP_SECONDS = 0.5
WAIT = 90.0
SECRET = "webhook-secret"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    env = {"GODEL_AUTONOMIC_INTERVAL_SECONDS": str(LOOP_SECONDS)}
    with running_mesh(tmp_path_factory.mktemp("autonomic"), None, "autonomic", extra_env=env) as running:
        yield running


def events(http: httpx.Client, pattern: str, **filters: str) -> list[dict[str, Any]]:
    body = ok(http.get("/api/v1/events", params={"type": pattern, "pageSize": 1000, **filters}))
    return list(body.get("events", []))


def data(event: dict[str, Any]) -> dict[str, Any]:
    """The typed payload of an event (JSON names its `data` oneof field, e.g. "scalingUp")."""
    known = {"id", "type", "timestamp", "source", "payload", "metadata", "sequence", "partitionKey"}
    (payload,) = [v for k, v in event.items() if k not in known]
    return dict(payload)


def when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


class Webhook:
    """A local HTTP server that records the JSON bodies POSTed to it (and checks their signature)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                assert self.headers["X-Godel-Signature"] == expected
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of(self, rule: str) -> list[str]:
        return [b["status"] for b in self.bodies if b["alert"]["ruleName"] == rule]


def test_spec_metrics_exist_with_their_types_and_summaries(mesh: RunningMesh) -> None:
    kinds = {
        "godel_agents_total": "counter",
        "godel_agents_active": "gauge",
        "godel_agent_duration_seconds": "histogram",
        "godel_agent_cost_dollars": "gauge",
        "godel_teams_total": "counter",
        "godel_team_agents": "gauge",
        "godel_team_completion_rate": "gauge",
        "godel_api_requests_total": "counter",
        "godel_api_request_duration_seconds": "histogram",
        "godel_events_total": "counter",
        "godel_queue_depth": "gauge",
        "godel_cluster_health_score": "gauge",
        "godel_cluster_agents": "gauge",
        "godel_federation_requests_total": "counter",
        "godel_memory_usage_bytes": "gauge",
    }
    with mesh.http() as http:
        team = ok(http.post("/api/v1/teams", json={"name": f"m-{uuid.uuid4().hex[:6]}", "task": "t"}))
        ok(http.post("/api/v1/tasks", json={"title": "waits", "teamId": team["id"]}))
        text = http.get("/api/v1/metrics").text
        for name, kind in kinds.items():
            assert f"# TYPE {name} {kind}" in text, name
        assert f'godel_queue_depth{{service="team",team_id="{team["id"]}"}} 1.0' in text
        teams = ok(http.get("/api/v1/metrics/teams"))
        assert int(teams["byStatus"]["creating"]) >= 1 and int(teams["queueDepth"]) >= 1
        agents = ok(http.get("/api/v1/metrics/agents"))
        total = int(agents.get("total", 0))
        assert total == sum(int(n) for n in agents.get("byStatus", {}).values())
        assert 0 <= int(agents.get("active", 0)) <= total and 0 <= agents.get("failureRate5m", 0) <= 1
        system = ok(http.get("/api/v1/metrics/system"))["figures"]
        assert system["services"]["team"]["up"] is True and system["services"]["team"]["memoryBytes"] > 0


def test_a_rule_fires_after_its_for_duration_resolves_and_a_silence_suppresses_it(mesh: RunningMesh) -> None:
    with mesh.http() as http, Webhook() as hook:
        ok(
            http.post(
                "/api/v1/notification-channels",
                json={"name": "hook", "type": "CHANNEL_TYPE_WEBHOOK", "url": hook.url, "secret": SECRET},
            )
        )
        team = ok(http.post("/api/v1/teams", json={"name": f"q-{uuid.uuid4().hex[:6]}", "task": "t"}))
        name = f"Backlog-{team['id'][:8]}"
        rule = post_backlog_rule(http, name, team["id"], "ALERT_SEVERITY_CRITICAL", "hook", forDuration="2s")
        assert "secret" not in ok(http.get("/api/v1/notification-channels"))["channels"][-1]
        task = ok(http.post("/api/v1/tasks", json={"title": "waits", "teamId": team["id"]}))
        wait_for(lambda: hook.of(name) == ["firing"], WAIT, "the webhook to hear it fire")
        fired = ok(http.get("/api/v1/alerts", params={"ruleId": rule["id"]}))["alerts"][0]
        assert fired["state"] == "ALERT_STATE_FIRING" and fired["labels"]["alertname"] == name
        held_for = (
            datetime.fromisoformat(fired["firedAt"].replace("Z", "+00:00"))
            - datetime.fromisoformat(fired["activeAt"].replace("Z", "+00:00"))
        ).total_seconds()
        assert held_for >= 2.0, fired
        ok(http.post(f"/api/v1/tasks/{task['id']}/complete", json={}))
        wait_for(lambda: hook.of(name) == ["firing", "resolved"], WAIT, "the webhook to hear it resolve")

        def history() -> list[str]:
            return [
                data(e)["alert"]["state"]
                for e in events(http, "system:alert:*")
                if data(e)["alert"]["ruleId"] == rule["id"]
            ]

        # The events travel through the outbox and Kafka to the event store: they may come later.
        wait_for(lambda: len(history()) >= 2, WAIT, "both events in the event store")
        assert history() == ["ALERT_STATE_FIRING", "ALERT_STATE_RESOLVED"]

        silence = ok(
            http.post(
                "/api/v1/silences",
                json={"matchers": {"alertname": name}, "duration": "600s", "comment": "maintenance"},
            )
        )
        assert silence["active"] is True
        task = ok(http.post("/api/v1/tasks", json={"title": "waits again", "teamId": team["id"]}))

        def silenced_firing() -> dict[str, Any] | None:
            alerts = ok(
                http.get("/api/v1/alerts", params={"ruleId": rule["id"], "state": "ALERT_STATE_FIRING"})
            )
            return next(iter(alerts.get("alerts", [])), None)

        again = wait_for(silenced_firing, WAIT, "the alert to fire again, silenced")
        assert again["silenced"] is True and not again.get("notifiedChannels")
        ok(http.post(f"/api/v1/tasks/{task['id']}/complete", json={}))
        wait_for(
            lambda: (
                len(
                    ok(
                        http.get(
                            "/api/v1/alerts", params={"ruleId": rule["id"], "state": "ALERT_STATE_RESOLVED"}
                        )
                    ).get("alerts", [])
                )
                == 2
            ),
            WAIT,
            "the silenced alert to resolve",
        )
        assert hook.of(name) == ["firing", "resolved"]  # nothing for the silenced one
        assert http.delete(f"/api/v1/silences/{silence['id']}").status_code == 200
        listed = ok(http.get("/api/v1/silences", params={"includeExpired": True}))["silences"]
        assert [s.get("active", False) for s in listed if s["id"] == silence["id"]] == [False]


def _policy(http: httpx.Client, name: str) -> dict[str, Any]:
    return ok(http.get(f"/api/v1/autonomic/policies/{name}"))


def _set_threshold(http: httpx.Client, name: str, threshold: float, cooldown: str) -> None:
    policy = _policy(http, name)
    policy["trigger"]["metric"]["threshold"] = threshold
    ok(
        http.patch(
            f"/api/v1/autonomic/policies/{policy['id']}",
            params={"updateMask": "trigger,cooldown"},
            json={"trigger": policy["trigger"], "cooldown": cooldown},
        )
    )


def test_the_default_policy_restarts_a_stuck_agent_and_its_cooldown_holds(mesh: RunningMesh) -> None:
    with mesh.http() as http:
        _set_threshold(http, "restart-stuck-agents", 3, "600s")
        try:
            agent = ok(
                http.post(
                    "/api/v1/agents",
                    json={"task": "hang", "config": {"runtime": "command", "command": ["sleep", "300"]}},
                )
            )
            restart = wait_for(
                lambda: next(iter(events(http, "system:autonomic:restart", agentId=agent["id"])), None),
                WAIT,
                "the loop to restart it",
            )
            decision = data(restart)["decision"]
            assert decision["policyName"] == "restart-stuck-agents" and not decision.get("error")
            assert "godel_agent_idle_seconds" in decision["reason"] and "> 3" in decision["reason"]
            transitions = ok(http.get(f"/api/v1/agents/{agent['id']}/transitions"))["transitions"]
            assert any(
                t["trigger"] == "restart" and "restart-stuck-agents" in t.get("reason", "")
                for t in transitions
            ), transitions

            def cooling() -> dict[str, Any] | None:
                recs = ok(http.get("/api/v1/autonomic/recommendations")).get("recommendations", [])
                return next(
                    (
                        r
                        for r in recs
                        if r["action"].get("target") == agent["id"]
                        and r["state"] == "RECOMMENDATION_STATE_COOLING_DOWN"
                    ),
                    None,
                )

            held = wait_for(cooling, WAIT, "the restarted agent, stuck again, to wait for the cooldown")
            assert when({"timestamp": held["notBefore"]}) > when(restart)
            assert len(events(http, "system:autonomic:restart", agentId=agent["id"])) == 1
            ok(http.post(f"/api/v1/agents/{agent['id']}/kill", json={"reason": "done"}))
        finally:
            _set_threshold(http, "restart-stuck-agents", 300, "600s")


def test_an_autoscaling_team_grows_under_a_backlog_and_shrinks_after_it(mesh: RunningMesh) -> None:
    cooldown = 3.0
    with mesh.http() as http:
        _set_threshold(http, "scale-up-on-backlog", 2, f"{cooldown:g}s")
        _set_threshold(http, "scale-down-when-idle", 1, f"{cooldown:g}s")
        team = ok(
            http.post(
                "/api/v1/teams",
                json={
                    "name": f"auto-{uuid.uuid4().hex[:6]}",
                    "task": "work",
                    "config": {"size": 1, "maxAgents": 3, "autoScale": True, "command": ["sleep", "300"]},
                },
            )
        )
        assert team["config"]["minAgents"] == 1
        start_team(http, team["id"])
        tasks = [
            ok(http.post("/api/v1/tasks", json={"title": f"t{i}", "teamId": team["id"]})) for i in range(5)
        ]

        def scaled(kind: str, n: int) -> list[dict[str, Any]] | None:
            found = events(http, f"scaling:{kind}", teamId=team["id"])
            return found if len(found) >= n else None

        ups = wait_for(lambda: scaled("up", 2), WAIT, "two scale-ups")
        assert [(data(e)["previousSize"], data(e)["targetSize"]) for e in ups] == [(1, 2), (2, 3)]
        for e in ups:
            assert "godel_queue_depth" in data(e)["decision"]["reason"]
        assert (when(ups[1]) - when(ups[0])).total_seconds() >= cooldown
        for task in tasks:
            ok(http.post(f"/api/v1/tasks/{task['id']}/complete", json={}))
        downs = wait_for(lambda: scaled("down", 2), WAIT, "two scale-downs")
        assert [(data(e)["previousSize"], data(e)["targetSize"]) for e in downs] == [(3, 2), (2, 1)]
        assert "< 1" in data(downs[0])["decision"]["reason"]
        assert (when(downs[1]) - when(downs[0])).total_seconds() >= cooldown
        assert ok(http.get(f"/api/v1/teams/{team['id']}"))["config"]["size"] == 1
        recs = ok(http.get("/api/v1/autonomic/recommendations"))["recommendations"]
        at_min = [r for r in recs if r["action"].get("target") == team["id"]]
        assert at_min and all(r["state"] != "RECOMMENDATION_STATE_READY" for r in at_min)
        assert len(scaled("up", 0) or []) == 2 and len(scaled("down", 0) or []) == 2
        http.delete(f"/api/v1/teams/{team['id']}")


def test_the_default_policy_fails_over_an_unhealthy_cluster(mesh: RunningMesh) -> None:
    with mesh.http() as http:
        name = f"sick-{uuid.uuid4().hex[:6]}"
        # It heartbeats with free slots, but its gateway cannot be reached: the registry's probes
        # score it 30 (connectivity, latency and error rate 0; capacity and freshness 1), below 50.
        cluster = ok(
            http.post("/api/v1/clusters", json={"name": name, "endpoint": "127.0.0.1:9", "region": "x"})
        )
        beat = {"currentAgents": 0, "maxAgents": 10}
        ok(http.post(f"/api/v1/clusters/{cluster['id']}/heartbeat", json=beat))
        failover = wait_for(
            lambda: next(
                (e for e in events(http, "system:autonomic:failover") if data(e)["cluster"] == name), None
            ),
            WAIT,
            "the loop to fail the cluster over",
        )
        decision = data(failover)["decision"]
        assert decision["policyName"] == "failover-unhealthy-cluster" and not decision.get("error")
        assert "godel_cluster_health_score" in decision["reason"] and "< 50" in decision["reason"]
        drained = ok(http.get(f"/api/v1/clusters/{cluster['id']}"))
        assert drained["status"] == "CLUSTER_STATUS_DRAINING", drained
        assert drained["healthScore"] < 50 and drained["health"].get("connectivity", 0) == 0, drained
        # A draining cluster is routed no more requests (degraded, it still was: region x is its own).
        route = http.post("/api/v1/clusters:route", json={"region": "x", "requireRegion": True})
        assert route.status_code == 400 and name in route.text and "draining" in route.text, route.text
        recs = ok(http.get("/api/v1/autonomic/recommendations")).get("recommendations", [])
        mine = [r for r in recs if r["action"].get("target") == name]
        assert mine and all(r["state"] != "RECOMMENDATION_STATE_READY" for r in mine), mine


def test_a_notify_policy_sends_to_the_event_channel_with_its_labels(mesh: RunningMesh) -> None:
    with mesh.http() as http:
        team = ok(http.post("/api/v1/teams", json={"name": f"n-{uuid.uuid4().hex[:6]}", "task": "t"}))
        policy = ok(
            http.post(
                "/api/v1/autonomic/policies",
                json={
                    "name": f"tell-{team['id'][:8]}",
                    "trigger": {
                        "metric": {
                            "metric": "godel_queue_depth",
                            "operator": "COMPARISON_OPERATOR_GT",
                            "threshold": 0,
                            "labels": {"team_id": team["id"]},
                        }
                    },
                    "action": {
                        "type": "AUTONOMIC_ACTION_TYPE_NOTIFY",
                        "channel": "events",
                        "message": "team {team_id} has a backlog",
                    },
                    "cooldown": "600s",
                },
            )
        )
        bad = http.post(
            "/api/v1/autonomic/policies",
            json={
                "name": "no-channel",
                "trigger": policy["trigger"],
                "action": {"type": "AUTONOMIC_ACTION_TYPE_NOTIFY"},
            },
        )
        assert bad.status_code == 400 and "action.channel" in bad.text
        try:
            ok(http.post("/api/v1/tasks", json={"title": "waits", "teamId": team["id"]}))
            expected = f"team {team['id']} has a backlog"

            def sent() -> list[dict[str, Any]] | None:
                found = [e for e in events(http, "system:notify") if data(e).get("message") == expected]
                return found or None

            (notice,) = wait_for(sent, WAIT, "the notification on the event channel")
            assert (
                data(notice)["channel"] == "events" and data(notice)["decision"]["policyId"] == policy["id"]
            )

            def decided() -> list[dict[str, Any]] | None:
                found = [
                    e
                    for e in events(http, "system:autonomic:notify")
                    if data(e)["decision"]["policyId"] == policy["id"]
                ]
                return found or None

            (decision,) = wait_for(decided, WAIT, "the notify decision")
            assert data(decision)["message"] == expected
        finally:
            assert http.delete(f"/api/v1/autonomic/policies/{policy['id']}").status_code == 200


def test_cli_lists_rules_alerts_policies_and_recommendations(mesh: RunningMesh, tmp_path: Path) -> None:
    rules = godel_cli(mesh, "alerts", "rules").stdout
    assert "QueueBacklog" in rules and "ClusterUnhealthy" in rules and "HighAgentFailureRate" in rules
    assert "restart-stuck-agents" in godel_cli(mesh, "autonomic", "policies").stdout
    godel_cli(mesh, "alerts", "list")
    godel_cli(mesh, "autonomic", "recommendations")
