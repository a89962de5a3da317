"""Tasks (queue semantics on a running team), budgets and intent over REST through Envoy."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import RunningMesh, godel_cli
from tests.integration.agent_helpers import Gate
from tests.integration.team_helpers import ok, start_team, wait_team
from tests.waits import poll


def _task(http: httpx.Client, task_id: str) -> dict[str, Any]:
    return ok(http.get(f"/api/v1/tasks/{task_id}"))


def _wait_status(http: httpx.Client, task_id: str, status: str) -> dict[str, Any]:
    return poll(lambda: _task(http, task_id), lambda t: t["status"] == status, 60, f"task {task_id} {status}")


def test_team_tasks_go_to_idle_agents_by_priority(godel: RunningMesh) -> None:
    # The members run until the test lets them end: the queue is checked while they are idle.
    end = Gate(godel.mesh.default_repo)
    member = ["sh", "-c", end.wait]
    with godel.http() as http:
        team = ok(
            http.post(
                "/api/v1/teams",
                json={"name": "queue", "task": "serve", "config": {"size": 2, "command": member}},
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
        # Usually given in the completing transaction; when the freed agent's row is locked by the
        # team service handling that agent's own event at that moment, that transaction gives it.
        low = _wait_status(http, created["low"]["id"], "TASK_STATUS_ASSIGNED")
        assert low["agentId"] == urgent["agentId"]
        listed = ok(http.get("/api/v1/tasks", params={"teamId": team["id"]}))["tasks"]
        assert {t["title"] for t in listed} == {"low", "high", "urgent"}
        end.open()
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


def test_bad_team_and_workflow_requests_are_refused_with_every_field(godel: RunningMesh) -> None:
    with godel.http() as http:
        before = len(ok(http.get("/api/v1/teams", params={"pageSize": 1000})).get("teams", []))
        bad = http.post(
            "/api/v1/teams",
            json={
                "name": "",
                "config": {"size": -1, "maxDepth": 9, "runtime": "perl"},
                "budgetAllocated": -5,
            },
        )
        assert bad.status_code == 400, bad.text
        for field in (
            "name",
            "task",
            "config.size",
            "config.max_depth",
            "config.runtime",
            "budget_allocated",
        ):
            assert field in bad.text, (field, bad.text)
        assert len(ok(http.get("/api/v1/teams", params={"pageSize": 1000})).get("teams", [])) == before
        missing = http.get("/api/v1/teams/00000000-0000-4000-8000-000000000000")
        assert missing.status_code == 404 and "not found" in missing.text
        not_uuid = http.get("/api/v1/workflows/nope")
        assert not_uuid.status_code == 400 and "id" in not_uuid.text
        yaml_error = http.post("/api/v1/workflows", json={"definitionText": "name: x\nsteps: [\n"})
        assert yaml_error.status_code == 400 and "definitionText" in yaml_error.text


def test_roles_guard_budgets_and_teams(godel: RunningMesh) -> None:
    developer, viewer = godel.create_key("developer"), godel.create_key("viewer")
    with godel.http(developer) as http:
        assert http.get("/api/v1/budgets").status_code == 200
        refused = http.post(
            "/api/v1/budgets",
            json={"entityType": "BUDGET_ENTITY_TYPE_ORGANIZATION", "entityId": "acme", "totalBudget": 1},
        )
        assert refused.status_code == 403, refused.text
        assert ok(http.post("/api/v1/intent/parse", json={"input": "show agents"}))["type"]
    with godel.http(viewer) as http:
        assert http.get("/api/v1/teams").status_code == 200
        assert http.post("/api/v1/teams", json={"name": "x", "task": "y"}).status_code == 403


def test_godel_budget_commands(godel: RunningMesh) -> None:
    made = json.loads(
        godel_cli(godel, "--json", "budget", "set", "--org", "acme-cli", "7.5", "--period", "daily").stdout
    )
    assert made["totalBudget"] == 7.5 and made["period"] == "BUDGET_PERIOD_DAILY"
    listed = godel_cli(godel, "budget", "list", "--org", "acme-cli").stdout
    assert "acme-cli" in listed and "7.5" in listed
    godel_cli(godel, "budget", "delete", made["id"])
    gone = godel_cli(godel, "budget", "get", made["id"], check=False)
    assert gone.returncode != 0 and "not found" in (gone.stdout + gone.stderr).lower()
