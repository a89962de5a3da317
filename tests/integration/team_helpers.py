"""Helpers of the orchestration tests: REST calls through Envoy and waiting on teams/workflows."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

TERMINAL_TEAM = ("TEAM_STATUS_COMPLETED", "TEAM_STATUS_FAILED")
TERMINAL_WORKFLOW = ("WORKFLOW_STATUS_COMPLETED", "WORKFLOW_STATUS_FAILED", "WORKFLOW_STATUS_CANCELLED")


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


def wait_team(http: httpx.Client, team_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        team = ok(http.get(f"/api/v1/teams/{team_id}"))
        if team.get("status") in TERMINAL_TEAM:
            return team
        assert time.monotonic() < deadline, f"team did not end: {team}"
        time.sleep(0.3)


def wait_workflow(http: httpx.Client, workflow_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        wf = ok(http.get(f"/api/v1/workflows/{workflow_id}"))
        if wf.get("status") in TERMINAL_WORKFLOW:
            return wf
        assert time.monotonic() < deadline, f"workflow did not end: {wf}"
        time.sleep(0.3)


def steps(http: httpx.Client, workflow_id: str) -> dict[str, dict[str, Any]]:
    body = ok(http.get(f"/api/v1/workflows/{workflow_id}/steps", params={"pageSize": 1000}))
    return {s["stepId"]: s for s in body.get("steps", [])}


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
