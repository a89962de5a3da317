"""Restarting (or killing) a service loses nothing: acknowledged agents stay, every event is stored
exactly once. This test breaks its own mesh, so it does not share the session one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from godel_deploy.postgres import PostgresServer
from tests.conftest import RunningMesh, running_mesh


@pytest.fixture(scope="module")
def crashy(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    with running_mesh(tmp_path_factory.mktemp("crashy"), postgres.url(), "crashy") as running:
        yield running


def _spawn(http: httpx.Client, n: int, label: str) -> list[str]:
    ids = []
    for i in range(n):
        reply = http.post("/api/v1/agents", json={"task": f"{label} {i}", "label": label})
        assert reply.status_code == 200, reply.text
        ids.append(reply.json()["id"])
    return ids


def _events_for(http: httpx.Client, ids: set[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = ""
    while True:
        page = http.get(
            "/api/v1/events", params={"type": "agent:spawn", "pageSize": 1000, "pageToken": token}
        ).json()
        found += [e for e in page.get("events", []) if e["metadata"].get("agentId") in ids]
        token = page.get("nextPageToken", "")
        if not token:
            return found


def _wait_events(http: httpx.Client, ids: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        events = _events_for(http, ids)
        if {e["metadata"]["agentId"] for e in events} == ids or time.monotonic() > deadline:
            return events
        time.sleep(0.3)


def _restart(godel: RunningMesh, role: str, *, kill: bool) -> None:
    if kill:
        godel.mesh.kill_service(role)
    else:
        godel.mesh.stop_service(role)
    godel.mesh.start_service(role)
    godel.mesh.wait_service(role)


def test_agent_service_killed_right_after_acknowledging(crashy: RunningMesh) -> None:
    with crashy.http() as http:
        ids = set(_spawn(http, 20, "before-kill"))
        _restart(crashy, "agent", kill=True)  # the outbox may still hold some of their events
        for agent_id in ids:
            assert http.get(f"/api/v1/agents/{agent_id}").status_code == 200
        events = _wait_events(http, ids)
    assert sorted(e["metadata"]["agentId"] for e in events) == sorted(ids), "each event stored exactly once"


def test_event_service_down_while_agents_are_created(crashy: RunningMesh) -> None:
    with crashy.http() as http:
        crashy.mesh.kill_service("event")
        ids = set(_spawn(http, 15, "while-event-down"))
        crashy.mesh.start_service("event")
        crashy.mesh.wait_service("event")
        events = _wait_events(http, ids)
    assert sorted(e["metadata"]["agentId"] for e in events) == sorted(ids)
    sequences = [int(e["sequence"]) for e in events]
    assert len(set(sequences)) == len(sequences)


def test_kafka_restart_loses_no_event(crashy: RunningMesh) -> None:
    with crashy.http() as http:
        crashy.kafka.stop()
        ids = set(_spawn(http, 10, "kafka-down"))  # acknowledged: committed with their outbox rows
        crashy.kafka.start()
        crashy.kafka.wait_ready()
        events = _wait_events(http, ids, timeout=90)
    assert sorted(e["metadata"]["agentId"] for e in events) == sorted(ids)


def test_graceful_restart_of_every_service_keeps_data(crashy: RunningMesh) -> None:
    with crashy.http() as http:
        ids = set(_spawn(http, 5, "graceful"))
        for role in ("cluster", "event", "agent", "team"):
            _restart(crashy, role, kill=False)
        listed = http.get("/api/v1/agents", params={"label": "graceful"}).json()["agents"]
        assert {a["id"] for a in listed} == ids
        assert len(_wait_events(http, ids)) == len(ids)
