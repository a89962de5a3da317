"""The generated Go and TypeScript code talk to the running mesh (plain gRPC through Envoy), and
decode the typed payloads of agent events read straight from Kafka (franz-go, kafkajs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import RunningMesh

REPO = Path(__file__).resolve().parents[2]


def _env(godel: RunningMesh) -> dict[str, str]:
    return {**os.environ, "GODEL_ADDR": godel.mesh.gateway_address, "GODEL_API_KEY": godel.admin_key}


def _check_agent(godel: RunningMesh, output: str, task: str) -> None:
    """The agent the client created and read back is the one the server stores. (Not its status:
    without a command it fails at once, maybe before the client reads it.)"""
    printed = json.loads(output.strip().splitlines()[-1])
    assert printed["task"] == task
    assert printed["status"].startswith("AGENT_STATUS_") and printed["status"] != "AGENT_STATUS_UNSPECIFIED"
    with godel.http() as http:
        stored = http.get(f"/api/v1/agents/{printed['id']}").json()
    fields = ("id", "task", "label", "spawnedAt", "repo")
    assert {f: printed[f] for f in fields} == {f: stored[f] for f in fields}, (printed, stored)


def _run(argv: list[str], client: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO / "clients" / client, env=env, capture_output=True, text=True, timeout=300
    )


def test_go_client_creates_and_reads_an_agent(godel: RunningMesh) -> None:
    result = _run(["go", "run", "./examples/createagent"], "go", _env(godel))
    assert result.returncode == 0, result.stderr
    _check_agent(godel, result.stdout, "hello from go")


def test_ts_client_creates_and_reads_an_agent(godel: RunningMesh) -> None:
    if not (REPO / "clients" / "ts" / "node_modules" / "kafkajs").is_dir():
        assert _run(["npm", "ci", "--no-audit", "--no-fund"], "ts", dict(os.environ)).returncode == 0
    result = _run(["npm", "run", "--silent", "create-agent"], "ts", _env(godel))
    assert result.returncode == 0, result.stderr
    _check_agent(godel, result.stdout, "hello from ts")


def _spawned_and_deleted(godel: RunningMesh) -> str:
    """An agent created and deleted at once: its agent:spawn and agent:delete are on Kafka."""
    with godel.http() as http:
        created = http.post("/api/v1/agents", json={"task": "read my events from kafka"})
        assert created.status_code == 200, created.text
        agent_id: str = created.json()["id"]
        assert http.delete(f"/api/v1/agents/{agent_id}").status_code == 200
    return agent_id


def _check_events(output: str, agent_id: str) -> None:
    """The program printed, from the typed payloads, the agent id and its status per event."""
    lines = [json.loads(line) for line in output.strip().splitlines()]
    assert lines[0] == {
        "type": "agent:spawn",
        "message": "AgentSpawned",
        "agentId": agent_id,
        "status": "AGENT_STATUS_PENDING",
    }, lines
    last = lines[-1]
    assert (last["type"], last["message"], last["agentId"]) == ("agent:delete", "AgentDeleted", agent_id)
    assert last["status"].startswith("AGENT_STATUS_") and last["status"] != "AGENT_STATUS_UNSPECIFIED"
    # Whatever ran in between (agent:start, agent:kill, ...) is the same agent's, typed as well.
    assert all(line["agentId"] == agent_id and line["message"].startswith("Agent") for line in lines)


def _kafka_env(godel: RunningMesh, agent_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "GODEL_KAFKA": godel.kafka.bootstrap,
        "GODEL_AGENT_ID": agent_id,
        "GODEL_TIMEOUT": "120",
    }


def test_go_program_decodes_typed_agent_events_from_kafka(godel: RunningMesh) -> None:
    agent_id = _spawned_and_deleted(godel)
    result = _run(["go", "run", "./examples/agentevents"], "go", _kafka_env(godel, agent_id))
    assert result.returncode == 0, result.stderr
    _check_events(result.stdout, agent_id)


def test_ts_program_decodes_typed_agent_events_from_kafka(godel: RunningMesh) -> None:
    if not (REPO / "clients" / "ts" / "node_modules" / "kafkajs").is_dir():
        assert _run(["npm", "ci", "--no-audit", "--no-fund"], "ts", dict(os.environ)).returncode == 0
    agent_id = _spawned_and_deleted(godel)
    result = _run(["npm", "run", "--silent", "agent-events"], "ts", _kafka_env(godel, agent_id))
    assert result.returncode == 0, result.stderr
    _check_events(result.stdout, agent_id)


def test_go_client_reports_a_wrong_key(godel: RunningMesh) -> None:
    env = {**_env(godel), "GODEL_API_KEY": "godel_sk_not-a-real-key-000000000000"}
    result = _run(["go", "run", "./examples/createagent"], "go", env)
    assert result.returncode == 1
    assert "Unauthenticated" in result.stderr
