"""Restarting (or killing) a service loses nothing: acknowledged agents stay, every event is stored
exactly once, and a workflow resumes after a team-service crash without re-running a step. These
tests break their own mesh, so they do not share the session one."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from godel_client import GodelClient, GodelError
from godel_deploy.postgres import PostgresServer
from tests.conftest import RunningMesh, running_mesh
from tests.integration.agent_helpers import Gate
from tests.integration.team_helpers import ok, steps, wait_workflow
from tests.waits import wait_for


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
    """The agent:spawn events of `ids` once every one of them is stored."""
    seen: list[dict[str, Any]] = []

    def stored() -> list[dict[str, Any]] | None:
        seen[:] = _events_for(http, ids)
        return list(seen) if {e["metadata"]["agentId"] for e in seen} == ids else None

    return wait_for(
        stored,
        timeout,
        f"the agent:spawn events of {len(ids)} agents",
        interval=0.3,
        describe=lambda: f"{len(seen)} stored, missing {ids - {e['metadata']['agentId'] for e in seen}}",
    )


def _outbox_keys(postgres: PostgresServer) -> set[str]:
    """The Kafka keys (agent ids, for agent events) of the rows waiting in the agent service's outbox."""
    return set(postgres.psql("SELECT key FROM outbox", dbname="crashy_agent").split())


def test_agent_service_killed_right_after_acknowledging(
    crashy: RunningMesh, postgres: PostgresServer
) -> None:
    with crashy.http() as http:
        with crashy.serving_after("agent"), crashy.kafka_after():
            # Kafka frozen: the relay cannot have the events acknowledged, so they stay in the outbox.
            crashy.kafka.process.signal_group(signal.SIGSTOP)
            ids = set(_spawn(http, 20, "before-kill"))
            held = _outbox_keys(postgres)
            crashy.mesh.kill_service("agent")
        assert ids <= held, f"events of {len(ids - held)} agents were not in the outbox at the kill"
        for agent_id in ids:
            assert http.get(f"/api/v1/agents/{agent_id}").status_code == 200
        events = _wait_events(http, ids, timeout=90)
    assert sorted(e["metadata"]["agentId"] for e in events) == sorted(ids), "each event stored exactly once"


def test_event_service_down_while_agents_are_created(crashy: RunningMesh) -> None:
    with crashy.http() as http:
        with crashy.serving_after("event"):
            crashy.mesh.kill_service("event")
            ids = set(_spawn(http, 15, "while-event-down"))
        events = _wait_events(http, ids)
    assert sorted(e["metadata"]["agentId"] for e in events) == sorted(ids)
    sequences = [int(e["sequence"]) for e in events]
    assert len(set(sequences)) == len(sequences)


def test_kafka_restart_loses_no_event(crashy: RunningMesh) -> None:
    with crashy.http() as http:
        with crashy.kafka_after():
            crashy.kafka.stop()
            ids = set(_spawn(http, 10, "kafka-down"))  # acknowledged: committed with their outbox rows
        events = _wait_events(http, ids, timeout=90)
    assert sorted(e["metadata"]["agentId"] for e in events) == sorted(ids)


def test_graceful_restart_of_every_service_keeps_data(crashy: RunningMesh) -> None:
    with crashy.http() as http:
        ids = set(_spawn(http, 5, "graceful"))
        for role in ("cluster", "event", "agent", "team"):
            with crashy.serving_after(role):
                crashy.mesh.stop_service(role)
        listed = http.get("/api/v1/agents", params={"label": "graceful"}).json()["agents"]
        assert {a["id"] for a in listed} == ids
        assert len(_wait_events(http, ids)) == len(ids)


def test_a_python_subscription_resumes_across_an_event_service_restart(crashy: RunningMesh) -> None:
    """The client's subscribe() reopens a stream the restart cut, after the last event it saw:
    every event arrives, once."""
    marker = uuid.uuid4().hex
    seen: list[str] = []
    failed: list[BaseException] = []

    def publish(client: GodelClient, kind: str) -> None:
        event_id = str(uuid.uuid4())  # an id makes publishing it again harmless

        def sent() -> bool:
            try:
                client.events.publish(kind, correlation_id=marker, id=event_id)
            except GodelError:
                return False
            return True

        wait_for(sent, 60, f"{kind} to be published")

    with GodelClient(crashy.mesh.gateway_address, crashy.admin_key, reconnect_for=90) as client:
        events = client.events.subscribe(
            ["client:*"], correlation_id=marker, from_sequence=0, heartbeat_seconds=1
        )

        def consume() -> None:
            try:
                for event in events:
                    seen.append(event.type)
                    if event.type == "client:after":
                        return
            except BaseException as exc:  # reported below, in the test's thread
                failed.append(exc)

        follower = threading.Thread(target=consume, daemon=True)
        follower.start()
        publish(client, "client:before")
        wait_for(lambda: seen == ["client:before"], 60, "the first event to arrive")
        with crashy.serving_after("event"):
            crashy.mesh.kill_service("event")
        publish(client, "client:after")
        follower.join(timeout=120)
    assert not follower.is_alive(), f"client:after did not arrive within 120s; seen {seen}"
    assert not failed, failed
    assert seen == ["client:before", "client:after"]


def test_team_service_crash_resumes_without_rerunning_completed_steps(
    crashy: RunningMesh,
) -> None:
    name = f"crash-resume-{uuid.uuid4().hex[:8]}"
    gate = Gate(crashy.mesh.default_repo)
    definition = {
        "name": name,
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "s1", "name": "s1", "task": "echo one"},
            {"id": "s2", "name": "s2", "task": "echo two", "dependsOn": ["s1"]},
            # s3 ends only once the test lets it: while the team service is down.
            {
                "id": "s3",
                "name": "s3",
                "task": f"{gate.wait}; echo three",
                "dependsOn": ["s2"],
            },
            {"id": "s4", "name": "s4", "task": "echo four", "dependsOn": ["s3"]},
            {"id": "s5", "name": "s5", "task": "echo five", "dependsOn": ["s4"]},
        ],
    }
    with crashy.http() as http:
        wf = ok(
            http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition), "start": True})
        )

        def s3_running() -> dict[str, dict[str, Any]] | None:
            found = steps(http, wf["id"])
            return found if found["s3"].get("agentId") else None

        before = wait_for(s3_running, 60, "step s3 to run", interval=0.2)
        s3_agent = before["s3"]["agentId"]
        with crashy.serving_after("team"):
            crashy.mesh.kill_service("team")
            gate.open()
            # s3's agent completes while the team service is down: its event waits in Kafka.
            wait_for(
                lambda: ok(http.get(f"/api/v1/agents/{s3_agent}"))["status"] == "AGENT_STATUS_COMPLETED",
                60,
                "s3's agent to complete while the team service is down",
                interval=0.2,
            )
            assert not crashy.mesh.services["team"].alive()
        done = wait_workflow(http, wf["id"])
        after = steps(http, wf["id"])
        assert done["status"] == "WORKFLOW_STATUS_COMPLETED", done
        for sid in ("s1", "s2", "s3"):
            assert after[sid]["agentId"] == before[sid]["agentId"], sid
        assert after["s3"]["result"]["output"] == "three"
        # Exactly one agent per step: nothing ran twice.
        for sid in ("s1", "s2", "s3", "s4", "s5"):
            agents = ok(http.get("/api/v1/agents", params={"label": f"{name}/{sid}", "pageSize": 100}))
            assert [a["id"] for a in agents.get("agents", [])] == [after[sid]["agentId"]], sid
