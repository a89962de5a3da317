"""Helpers of the orchestration tests: REST calls through Envoy and waiting on teams/workflows."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.waits import poll

TERMINAL_TEAM = ("TEAM_STATUS_COMPLETED", "TEAM_STATUS_FAILED")
TERMINAL_WORKFLOW = ("WORKFLOW_STATUS_COMPLETED", "WORKFLOW_STATUS_FAILED", "WORKFLOW_STATUS_CANCELLED")


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


def post_backlog_rule(
    http: httpx.Client, name: str, team_id: str, severity: str, channel: str, **more: Any
) -> dict[str, Any]:
    """Posts alert rule `name`: the queue of team `team_id` holds a task (godel_queue_depth > 0),
    told to notification channel `channel`; `more` adds fields of the rule (e.g. forDuration)."""
    condition = {
        "metric": "godel_queue_depth",
        "operator": "COMPARISON_OPERATOR_GT",
        "threshold": 0,
        "labels": {"team_id": team_id},
    }
    rule = {"name": name, "condition": condition, "severity": severity, "channels": [channel], **more}
    return ok(http.post("/api/v1/alert-rules", json=rule))


def _wait_ended(http: httpx.Client, path: str, ended: tuple[str, ...], timeout: float) -> dict[str, Any]:
    return poll(
        lambda: ok(http.get(path)),
        lambda doc: doc.get("status") in ended,
        timeout,
        f"{path} to end",
        interval=0.3,
    )


def wait_team(http: httpx.Client, team_id: str, timeout: float = 120.0) -> dict[str, Any]:
    return _wait_ended(http, f"/api/v1/teams/{team_id}", TERMINAL_TEAM, timeout)


def wait_workflow(http: httpx.Client, workflow_id: str, timeout: float = 120.0) -> dict[str, Any]:
    return _wait_ended(http, f"/api/v1/workflows/{workflow_id}", TERMINAL_WORKFLOW, timeout)


def steps(http: httpx.Client, workflow_id: str) -> dict[str, dict[str, Any]]:
    body = ok(http.get(f"/api/v1/workflows/{workflow_id}/steps", params={"pageSize": 1000}))
    return {s["stepId"]: s for s in body.get("steps", [])}


def gated_workflow(name: str, wait: str) -> dict[str, Any]:
    """Three steps s1 -> s2 -> s3 whose middle one runs until the shell code `wait` returns (a
    Gate's `wait`): the test decides when the workflow can finish."""
    return {
        "name": name,
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "s1", "task": "echo one"},
            {"id": "s2", "task": f"{wait}; echo two", "dependsOn": ["s1"]},
            {"id": "s3", "task": "echo three", "dependsOn": ["s2"]},
        ],
    }


def echo_command(script: str) -> list[str]:
    """A command-runtime argv that runs `script` with the member's task as $1."""
    return ["sh", "-c", script, "member", "{task}"]


def start_team(http: httpx.Client, team_id: str, *, follow: bool = False) -> list[dict[str, Any]]:
    """POST /teams/{id}/start: a server stream (SSE through Envoy) of progress updates until the
    team ends. With follow=False only the first update is read and the stream is closed (the team
    keeps running)."""
    updates: list[dict[str, Any]] = []
    with http.stream("POST", f"/api/v1/teams/{team_id}/start", json={}, timeout=180) as response:
        assert response.status_code == 200, response.read().decode()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            updates.append(json.loads(line.removeprefix("data:").strip()))
            if not follow:
                break
    return updates
