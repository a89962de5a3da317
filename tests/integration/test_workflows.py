"""Durable DAG workflows end to end on real Kafka, PostgreSQL, Envoy and command-runtime agents:
a 30-step diamond under maxConcurrency 4, conditions, validation, cancel, and a kill -9 of the
team service mid-workflow that resumes without re-running completed steps."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import RunningMesh
from tests.integration.team_helpers import ok, steps, wait_workflow


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _run(http: httpx.Client, definition: dict[str, Any]) -> dict[str, Any]:
    return ok(http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition), "start": True}))


def _event_types(http: httpx.Client, workflow_id: str) -> list[str]:
    reply = ok(http.get("/api/v1/events", params={"workflowId": workflow_id, "pageSize": 100}))
    return [e["type"] for e in reply.get("events", [])]


def _diamond(width: int, layers: int) -> list[dict[str, Any]]:
    """source -> `layers` layers of `width` parallel steps (each on all of the layer before) -> sink."""
    out: list[dict[str, Any]] = [{"id": "source", "name": "source", "task": "echo source"}]
    previous = ["source"]
    for layer in range(layers):
        current = [f"l{layer}-{i}" for i in range(width)]
        out += [{"id": s, "name": s, "task": f"sleep 0.2; echo {s}", "dependsOn": previous} for s in current]
        previous = current
    out.append({"id": "sink", "name": "sink", "task": "echo sink", "dependsOn": previous})
    return out


def test_thirty_step_diamond_respects_max_concurrency_and_order(godel: RunningMesh) -> None:
    definition: dict[str, Any] = {
        "name": "diamond-30",
        "maxConcurrency": 4,
        "runtime": "command",
        "command": ["sh", "-c", "{task}"],
        "steps": _diamond(width=7, layers=4),
    }
    assert len(definition["steps"]) == 30
    with godel.http() as http:
        wf = _run(http, definition)
        done = wait_workflow(http, wf["id"], timeout=240)
        assert done["status"] == "WORKFLOW_STATUS_COMPLETED", done
        assert done["progress"] == 100
        by_id = steps(http, wf["id"])
    assert all(s["status"] == "STEP_STATUS_COMPLETED" for s in by_id.values())
    intervals = {sid: (_ts(s["startedAt"]), _ts(s["completedAt"])) for sid, s in by_id.items()}
    # Dependency order: a step starts only after every step it depends on has completed.
    for s in definition["steps"]:
        for dep in s.get("dependsOn", []):
            assert intervals[s["id"]][0] >= intervals[dep][1], (s["id"], dep)
    # Never more than 4 running at once (an end at the same instant frees its slot first).
    points = sorted([(t0, 1) for t0, _ in intervals.values()] + [(t1, -1) for _, t1 in intervals.values()])
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    assert 2 <= peak <= 4, peak
    assert by_id["sink"]["result"]["output"] == "sink"


def test_conditions_templates_and_continue(godel: RunningMesh) -> None:
    definition = {
        "name": "conditions",
        "onError": "continue",
        "runtime": "command",
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "build", "name": "build", "task": "echo build ok"},
            {"id": "flaky", "name": "flaky", "task": "exit 1"},
            {
                "id": "deploy",
                "name": "deploy",
                "task": "echo deployed",
                "dependsOn": ["build"],
                "when": "'ok' in steps.build.output",
            },
            {
                "id": "rollback",
                "name": "rollback",
                "task": "echo rollback",
                "dependsOn": ["build"],
                "when": "'failed' in steps.build.output",
            },
            {
                "id": "report",
                "name": "report",
                "task": "echo 'report: {{ steps.build.output }}'",
                "dependsOn": ["deploy", "rollback", "flaky"],
            },
        ],
    }
    with godel.http() as http:
        wf = _run(http, definition)
        done = wait_workflow(http, wf["id"])
        by_id = steps(http, wf["id"])
    assert done["status"] == "WORKFLOW_STATUS_COMPLETED", done
    assert by_id["deploy"]["status"] == "STEP_STATUS_COMPLETED"
    assert by_id["rollback"]["status"] == "STEP_STATUS_SKIPPED"
    assert by_id["flaky"]["status"] == "STEP_STATUS_FAILED"
    assert by_id["report"]["result"]["output"] == "report: build ok"


def test_failing_step_is_retried_then_fails_the_workflow(godel: RunningMesh) -> None:
    definition = {
        "name": "retry",
        "onError": "retry",
        "retryPolicy": {"maxRetries": 2, "initialBackoff": "0.2s"},
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "bad", "name": "bad", "task": "exit 2"},
            {"id": "after", "name": "after", "task": "echo never", "dependsOn": ["bad"]},
        ],
    }
    with godel.http() as http:
        wf = _run(http, definition)
        done = wait_workflow(http, wf["id"])
        by_id = steps(http, wf["id"])
        # The event store lags the workflow state by the Kafka hop: wait for the last event.
        deadline = time.monotonic() + 30
        while "workflow:error" not in (types := _event_types(http, wf["id"])):
            assert time.monotonic() < deadline, types
            time.sleep(0.2)
    assert done["status"] == "WORKFLOW_STATUS_FAILED"
    assert by_id["bad"]["status"] == "STEP_STATUS_FAILED" and by_id["bad"]["retryCount"] == 2
    assert by_id["after"]["status"] == "STEP_STATUS_CANCELLED"
    assert types.count("workflow:step:retry") == 2 and "workflow:error" in types


def test_validation_lists_every_violation(godel: RunningMesh) -> None:
    definition = {
        "name": "broken",
        "steps": [
            {"id": "a", "name": "a", "task": "x", "dependsOn": ["c"]},
            {"id": "b", "name": "b", "task": "x", "dependsOn": ["a"], "when": "steps.zzz.output =="},
            {"id": "c", "name": "c", "task": "x", "dependsOn": ["b"]},
            {"id": "a", "name": "dup", "task": "x"},
            {"id": "d", "name": "d", "task": "x", "dependsOn": ["nope"]},
        ],
    }
    with godel.http() as http:
        before = len(ok(http.get("/api/v1/workflows", params={"pageSize": 1000})).get("workflows", []))
        reply = http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition)})
        after = len(ok(http.get("/api/v1/workflows", params={"pageSize": 1000})).get("workflows", []))
    assert reply.status_code == 400, reply.text
    text = reply.text
    assert "cycle" in text and "already the id" in text and "nope" in text and "steps[1].when" in text
    assert before == after


def test_cancel_stops_the_running_steps_agents(godel: RunningMesh) -> None:
    definition = {
        "name": "cancel-me",
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "long1", "name": "long1", "task": "sleep 300"},
            {"id": "long2", "name": "long2", "task": "sleep 300"},
            {"id": "later", "name": "later", "task": "echo later", "dependsOn": ["long1"]},
        ],
    }
    with godel.http() as http:
        wf = _run(http, definition)
        deadline = time.monotonic() + 60
        while not all(s.get("agentId") for sid, s in steps(http, wf["id"]).items() if sid != "later"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        cancelled = ok(http.post(f"/api/v1/workflows/{wf['id']}/cancel", json={"reason": "test"}))
        assert cancelled["status"] == "WORKFLOW_STATUS_CANCELLED"
        by_id = steps(http, wf["id"])
        assert {s["status"] for s in by_id.values()} == {"STEP_STATUS_CANCELLED"}
        for sid in ("long1", "long2"):
            agent_id = by_id[sid]["agentId"]
            deadline = time.monotonic() + 30
            while ok(http.get(f"/api/v1/agents/{agent_id}"))["status"] != "AGENT_STATUS_KILLED":
                assert time.monotonic() < deadline, f"agent of {sid} not killed"
                time.sleep(0.3)
        again = http.post(f"/api/v1/workflows/{wf['id']}/cancel", json={})
        assert again.status_code == 400 or again.status_code == 412, again.text


def test_team_service_crash_resumes_without_rerunning_completed_steps(godel: RunningMesh) -> None:
    definition = {
        "name": "crash-resume",
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "s1", "name": "s1", "task": "echo one"},
            {"id": "s2", "name": "s2", "task": "echo two", "dependsOn": ["s1"]},
            {"id": "s3", "name": "s3", "task": "sleep 4; echo three", "dependsOn": ["s2"]},
            {"id": "s4", "name": "s4", "task": "echo four", "dependsOn": ["s3"]},
            {"id": "s5", "name": "s5", "task": "echo five", "dependsOn": ["s4"]},
        ],
    }
    with godel.http() as http:
        wf = _run(http, definition)
        deadline = time.monotonic() + 60
        while steps(http, wf["id"])["s3"]["status"] != "STEP_STATUS_RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        before = steps(http, wf["id"])
    godel.mesh.kill_service("team")
    try:
        time.sleep(5)  # s3 completes while the team service is down: its event waits in Kafka
    finally:
        godel.mesh.start_service("team")
        godel.mesh.wait_service("team")
    with godel.http() as http:
        done = wait_workflow(http, wf["id"])
        after = steps(http, wf["id"])
        assert done["status"] == "WORKFLOW_STATUS_COMPLETED", done
        for sid in ("s1", "s2"):
            assert after[sid]["agentId"] == before[sid]["agentId"]
        # Exactly one agent per step: nothing ran twice.
        for sid in ("s1", "s2", "s3", "s4", "s5"):
            agents = ok(http.get("/api/v1/agents", params={"label": f"crash-resume/{sid}", "pageSize": 100}))
            mine = [a for a in agents.get("agents", []) if a["id"] == after[sid]["agentId"]]
            assert len(agents.get("agents", [])) >= 1 and mine, sid
        labels = [
            a["label"]
            for a in ok(http.get("/api/v1/agents", params={"pageSize": 1000})).get("agents", [])
            if a.get("label", "").startswith("crash-resume/")
        ]
    assert sorted(labels) == [
        "crash-resume/s1",
        "crash-resume/s2",
        "crash-resume/s3",
        "crash-resume/s4",
        "crash-resume/s5",
    ]


def test_pause_and_resume_reach_the_running_steps_agents(godel: RunningMesh) -> None:
    definition = {
        "name": "pausable",
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "work", "name": "work", "task": "sleep 3; echo worked"},
            {"id": "next", "name": "next", "task": "echo next", "dependsOn": ["work"]},
        ],
    }
    with godel.http() as http:
        wf = _run(http, definition)
        deadline = time.monotonic() + 60
        while (
            not (agent_id := steps(http, wf["id"])["work"].get("agentId"))
            or ok(http.get(f"/api/v1/agents/{agent_id}"))["status"] != "AGENT_STATUS_RUNNING"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        paused = ok(http.post(f"/api/v1/workflows/{wf['id']}/pause", json={}))
        assert paused["status"] == "WORKFLOW_STATUS_PAUSED"
        deadline = time.monotonic() + 30
        while ok(http.get(f"/api/v1/agents/{agent_id}"))["status"] != "AGENT_STATUS_PAUSED":
            assert time.monotonic() < deadline, "the step's agent was not paused"
            time.sleep(0.2)
        time.sleep(4)  # longer than the step: a paused agent does not finish
        assert steps(http, wf["id"])["work"]["status"] == "STEP_STATUS_RUNNING"
        resumed = ok(http.post(f"/api/v1/workflows/{wf['id']}/resume", json={}))
        assert resumed["status"] == "WORKFLOW_STATUS_RUNNING"
        done = wait_workflow(http, wf["id"])
        assert done["status"] == "WORKFLOW_STATUS_COMPLETED", done
        assert steps(http, wf["id"])["next"]["result"]["output"] == "next"


def test_workflow_timeout_fails_it_and_stops_its_agents(godel: RunningMesh) -> None:
    definition = {
        "name": "too-slow",
        "timeout": 2,
        "command": ["sh", "-c", "{task}"],
        "steps": [{"id": "slow", "name": "slow", "task": "sleep 300"}],
    }
    with godel.http() as http:
        wf = _run(http, definition)
        done = wait_workflow(http, wf["id"], timeout=60)
        assert done["status"] == "WORKFLOW_STATUS_FAILED"
        assert "timed out" in done["metadata"]["error"]
        agent_id = steps(http, wf["id"])["slow"].get("agentId")
        assert agent_id
        deadline = time.monotonic() + 30
        while ok(http.get(f"/api/v1/agents/{agent_id}"))["status"] != "AGENT_STATUS_KILLED":
            assert time.monotonic() < deadline
            time.sleep(0.3)
