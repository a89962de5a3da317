"""Durable DAG workflows end to end on real Kafka, PostgreSQL, Envoy and command-runtime agents:
a 30-step diamond under maxConcurrency 4, conditions, validation, cancel, pause, timeouts, and the
calls that edit, start and delete a workflow. (A kill -9 of the team service mid-workflow is in
test_restarts.py: it breaks its mesh.)"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import RunningMesh
from tests.fakes.worker_env import parent_pid, proc_state
from tests.integration.agent_helpers import pids_with
from tests.integration.team_helpers import ok, steps, wait_workflow
from tests.waits import poll, wait_for


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _run(http: httpx.Client, definition: dict[str, Any]) -> dict[str, Any]:
    return ok(http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition), "start": True}))


def _event_types(http: httpx.Client, workflow_id: str) -> list[str]:
    reply = ok(http.get("/api/v1/events", params={"workflowId": workflow_id, "pageSize": 100}))
    return [e["type"] for e in reply.get("events", [])]


def _wait_agent_status(http: httpx.Client, agent_id: str, status: str) -> None:
    poll(lambda: ok(http.get(f"/api/v1/agents/{agent_id}")), lambda a: a["status"] == status, 60, status)


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
        types = poll(
            lambda: _event_types(http, wf["id"]),
            lambda t: "workflow:error" in t,
            30,
            "the workflow:error event",
        )
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
        wait_for(
            lambda: all(s.get("agentId") for sid, s in steps(http, wf["id"]).items() if sid != "later"),
            60,
            "both long steps to have agents",
            interval=0.3,
        )
        cancelled = ok(http.post(f"/api/v1/workflows/{wf['id']}/cancel", json={"reason": "test"}))
        assert cancelled["status"] == "WORKFLOW_STATUS_CANCELLED"
        by_id = steps(http, wf["id"])
        assert {s["status"] for s in by_id.values()} == {"STEP_STATUS_CANCELLED"}
        for sid in ("long1", "long2"):
            _wait_agent_status(http, by_id[sid]["agentId"], "AGENT_STATUS_KILLED")
        again = http.post(f"/api/v1/workflows/{wf['id']}/cancel", json={})
        assert again.status_code == 400 or again.status_code == 412, again.text


def test_pause_and_resume_reach_the_running_steps_agents(godel: RunningMesh) -> None:
    marker = uuid.uuid4().hex
    definition = {
        "name": "pausable",
        "command": ["sh", "-c", "{task}"],
        "steps": [
            # Runs until the test writes `release` into its worktree, so it is surely running when
            # paused. No subshells: the one `sh` with the marker is the process checked below.
            {
                "id": "work",
                "name": "work",
                "task": f"while [ ! -e release ]; do sleep 0.1; done; echo worked {marker}",
            },
            {"id": "next", "name": "next", "task": "echo next", "dependsOn": ["work"]},
        ],
    }
    with godel.http() as http:
        wf = _run(http, definition)
        agent_id = wait_for(lambda: steps(http, wf["id"])["work"].get("agentId"), 60, "the step's agent")
        _wait_agent_status(http, agent_id, "AGENT_STATUS_RUNNING")
        paused = ok(http.post(f"/api/v1/workflows/{wf['id']}/pause", json={}))
        assert paused["status"] == "WORKFLOW_STATUS_PAUSED"
        _wait_agent_status(http, agent_id, "AGENT_STATUS_PAUSED")
        # A paused agent does not finish: its shell is stopped (the sandbox's own processes carry
        # the command line too, and so does a child the pause caught between its fork and its exec
        # of `sleep`: the shell is the one whose parent is none of them).
        shells = [p for p in pids_with(marker) if Path(f"/proc/{p}/comm").read_text().strip() == "sh"]
        (shell,) = [p for p in shells if parent_pid(p) not in shells]
        wait_for(lambda: proc_state(shell) == "T", 15, "the step's process to stop")
        assert steps(http, wf["id"])["work"]["status"] == "STEP_STATUS_RUNNING"
        (Path(ok(http.get(f"/api/v1/agents/{agent_id}"))["worktree"]) / "release").touch()
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
        _wait_agent_status(http, agent_id, "AGENT_STATUS_KILLED")


def test_a_created_workflow_is_edited_started_and_deleted(godel: RunningMesh) -> None:
    definition = {
        "name": "edit-start-delete",
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "long", "name": "long", "task": "sleep 300"},
            {"id": "after", "name": "after", "task": "echo after", "dependsOn": ["long"]},
        ],
    }
    with godel.http() as http:
        wf = ok(http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition)}))
        wf_id = wf["id"]
        assert wf["status"] == "WORKFLOW_STATUS_PENDING"
        assert {s["status"] for s in steps(http, wf_id).values()} == {"STEP_STATUS_PENDING"}

        updated = ok(
            http.patch(
                f"/api/v1/workflows/{wf_id}",
                params={"updateMask": "name,context"},
                json={"name": "renamed", "description": "not in the mask", "context": {"env": "staging"}},
            )
        )
        assert (updated["name"], updated.get("description", ""), updated["context"]) == (
            "renamed",
            "",
            {"env": "staging"},
        )
        # Refused updates name the field and change nothing.
        for mask, body, field in (
            ("status", {"status": "WORKFLOW_STATUS_COMPLETED"}, "update_mask"),
            ("name", {"name": ""}, "workflow.name"),
        ):
            refused = http.patch(f"/api/v1/workflows/{wf_id}", params={"updateMask": mask}, json=body)
            assert refused.status_code == 400 and field in refused.text, (mask, refused.text)
        stored = ok(http.get(f"/api/v1/workflows/{wf_id}"))
        assert (stored["name"], stored["status"]) == ("renamed", "WORKFLOW_STATUS_PENDING")
        missing = http.patch(f"/api/v1/workflows/{uuid.uuid4()}", json={"name": "x"})
        assert missing.status_code == 404, missing.text

        started = ok(http.post(f"/api/v1/workflows/{wf_id}/start", json={}))
        assert started["status"] == "WORKFLOW_STATUS_RUNNING"
        agent_id = wait_for(lambda: steps(http, wf_id)["long"].get("agentId"), 60, "the long step's agent")
        _wait_agent_status(http, agent_id, "AGENT_STATUS_RUNNING")
        again = ok(http.post(f"/api/v1/workflows/{wf_id}/start", json={}))
        assert again["status"] == "WORKFLOW_STATUS_RUNNING", "starting a running workflow changes nothing"

        assert http.delete(f"/api/v1/workflows/{wf_id}").status_code == 200
        assert http.get(f"/api/v1/workflows/{wf_id}").status_code == 404
        # Deleting a running workflow stops its steps' agents.
        _wait_agent_status(http, agent_id, "AGENT_STATUS_KILLED")
        assert http.delete(f"/api/v1/workflows/{wf_id}").status_code == 404
        assert http.post(f"/api/v1/workflows/{wf_id}/start", json={}).status_code == 404
