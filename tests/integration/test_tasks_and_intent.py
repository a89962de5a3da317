"""Tasks (queue semantics on a running team), budgets and intent over REST through Envoy."""

from __future__ import annotations

import time

from tests.conftest import RunningMesh
from tests.integration.team_helpers import ok, start_team, wait_team


def _task(http: object, task_id: str) -> dict[str, object]:
    return ok(http.get(f"/api/v1/tasks/{task_id}"))  # type: ignore[attr-defined]


def _wait_status(http: object, task_id: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while (task := _task(http, task_id))["status"] != status:
        assert time.monotonic() < deadline, task
        time.sleep(0.2)
    return task


def test_team_tasks_go_to_idle_agents_by_priority(godel: RunningMesh) -> None:
    with godel.http() as http:
        team = ok(
            http.post(
                "/api/v1/teams",
                json={
                    "name": "queue",
                    "task": "serve",
                    "config": {"size": 2, "command": ["sh", "-c", "sleep 8"]},
                },
            )
        )
        created = {
            title: ok(
                http.post(
                    "/api/v1/tasks",
                    json={"title": title, "teamId": team["id"], "priority": f"TASK_PRIORITY_{p}"},
                )
            )
            for title, p in (("low", "LOW"), ("high", "HIGH"), ("urgent", "CRITICAL"))
        }
        # No agent yet: everything waits in the queue.
        assert {_task(http, t["id"])["status"] for t in created.values()} == {"TASK_STATUS_PENDING"}
        bad = http.post("/api/v1/tasks", json={"title": "", "priority": "TASK_PRIORITY_LOW"})
        assert bad.status_code == 400 and "title" in bad.text
        start_team(http, team["id"])
        # Two agents appear: the two most urgent tasks go to them, `low` keeps waiting.
        urgent = _wait_status(http, created["urgent"]["id"], "TASK_STATUS_ASSIGNED")
        high = _wait_status(http, created["high"]["id"], "TASK_STATUS_ASSIGNED")
        assert urgent["agentId"] != high["agentId"]
        assert _task(http, created["low"]["id"])["status"] == "TASK_STATUS_PENDING"
        done = ok(http.post(f"/api/v1/tasks/{urgent['id']}/complete", json={"result": {"ok": True}}))
        assert done["status"] == "TASK_STATUS_COMPLETED"
        low = _task(http, created["low"]["id"])
        assert low["status"] == "TASK_STATUS_ASSIGNED" and low["agentId"] == urgent["agentId"]
        listed = ok(http.get("/api/v1/tasks", params={"teamId": team["id"]}))["tasks"]
        assert {t["title"] for t in listed} == {"low", "high", "urgent"}
        wait_team(http, team["id"])
        # The agents ended while holding tasks: those go back to the queue.
        _wait_status(http, created["low"]["id"], "TASK_STATUS_PENDING")
        _wait_status(http, created["high"]["id"], "TASK_STATUS_PENDING")


def test_budgets_api(godel: RunningMesh) -> None:
    with godel.http() as http:
        created = ok(
            http.post(
                "/api/v1/budgets",
                json={
                    "entityType": "BUDGET_ENTITY_TYPE_USER",
                    "entityId": "alice",
                    "totalBudget": 12.5,
                    "period": "BUDGET_PERIOD_MONTHLY",
                },
            )
        )
        assert created["totalBudget"] == 12.5 and created["currency"] == "USD"
        assert ok(http.get(f"/api/v1/budgets/{created['id']}"))["entityId"] == "alice"
        bad = http.post(
            "/api/v1/budgets",
            json={"entityType": "BUDGET_ENTITY_TYPE_USER", "entityId": "x", "totalBudget": -1},
        )
        assert bad.status_code == 400 and "total_budget" in bad.text
        assert http.delete(f"/api/v1/budgets/{created['id']}").status_code == 200
        assert http.get(f"/api/v1/budgets/{created['id']}").status_code == 404


def test_intent_endpoints(godel: RunningMesh) -> None:
    with godel.http() as http:
        intent = ok(
            http.post(
                "/api/v1/intent/parse",
                json={"input": "Create a team of 3 agents to review the authentication code"},
            )
        )
        assert intent["type"] == "INTENT_TYPE_CREATE_TEAM" and intent["confidence"] == 0.95
        assert intent["parameters"] == {"size": 3, "task": "review authentication code"}
        simple = ok(http.post("/api/v1/intent/complexity", json={"task": "Fix typo in README"}))
        assert simple["score"] < 3 and simple["category"] == "simple"
        hard = ok(
            http.post(
                "/api/v1/intent/complexity",
                json={"task": "Implement distributed consensus algorithm with Byzantine fault tolerance"},
            )
        )
        assert hard["score"] > 7 and hard["category"] == "very-complex"
        swarm = ok(http.post("/api/v1/intent/swarm-config", json={"task": "review the authentication code"}))
        assert swarm["size"] >= 1 and swarm["agents"]
        empty = http.post("/api/v1/intent/parse", json={"input": "  "})
        assert empty.status_code == 400 and "input" in empty.text
