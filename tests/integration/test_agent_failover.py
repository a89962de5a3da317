"""Failover of agent execution: two agent-service replicas and two workers on PostgreSQL and Kafka.
Killing (-9) a worker or a replica in the middle of runs restarts or adopts every affected agent
elsewhere within 15 s, no agent stays running forever and no event is lost. Also: stuck runs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from godel.v1 import agent_pb2, agent_service_pb2
from godel_deploy.postgres import PostgresServer
from tests.conftest import RunningMesh, running_mesh
from tests.integration.agent_helpers import Agents, pids_with, wait_for

L = agent_pb2
pytestmark = pytest.mark.timeout(300)

TICKS = "for i in $(seq 1 16); do echo tick $i; sleep 0.5; done"  # 8 s, never silent for long


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    env = {
        "GODEL_AGENT_LEASE_SECONDS": "3",
        "GODEL_WORKER_LOST_GRACE": "2",
        "GODEL_AGENT_PROGRESS_TIMEOUT": "4",
        "GODEL_RETRY_BACKOFF_SECONDS": "0.5",
    }
    home: Path = tmp_path_factory.mktemp("failover")
    with running_mesh(home, postgres.url(), "failover", workers=0, extra_env=env) as running:
        running.mesh.start_agent_replica("agent-2")
        running.mesh.start_worker("worker-a")
        running.mesh.start_worker("worker-b")
        yield running


def _spawn_ticking(agents: Agents, n: int) -> list[str]:
    return [agents.spawn(["sh", "-c", TICKS], max_retries=3).id for _ in range(n)]


def _all_executing(agents: Agents, ids: list[str], timeout: float = 30) -> dict[str, agent_pb2.Agent]:
    return {
        i: agents.wait(
            i, lambda a: a.lifecycle_state == L.LIFECYCLE_STATE_EXECUTING and bool(a.worker_id), timeout
        )
        for i in ids
    }


def _complete_with_events(agents: Agents, ids: list[str]) -> None:
    for agent_id in ids:
        done = agents.wait_final(agent_id, timeout=60)
        assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, (agent_id, done.last_error)
        types = agents.wait_events(agent_id, ["agent:spawn", "agent:start", "agent:complete"])
        assert types.count("agent:spawn") == 1 and types.count("agent:complete") == 1


def test_killing_a_worker_restarts_its_agents_on_the_other(cluster: RunningMesh) -> None:
    agents = Agents(cluster, cluster.mesh.address("agent"))
    ids = _spawn_ticking(agents, 6)
    running = _all_executing(agents, ids)
    workers = {a.worker_id for a in running.values()}
    victim_id = next(iter(workers))
    affected = [i for i, a in running.items() if a.worker_id == victim_id]
    # Worker ids are worker-<host>-<pid>-<random>.
    victim = next(p for p in cluster.mesh.workers.values() if f"-{p.pid}-" in victim_id)
    victim.kill9()
    killed_at = time.monotonic()
    for agent_id in affected:
        moved = agents.wait(
            agent_id,
            lambda a: (
                (a.worker_id not in ("", victim_id) and a.lifecycle_state == L.LIFECYCLE_STATE_EXECUTING)
                or a.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED
            ),
            timeout=15 - (time.monotonic() - killed_at) + 0.5,
            what="restarted on another worker",
        )
        assert moved.retry_count >= 1 or moved.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED
    assert time.monotonic() - killed_at < 15.5
    _complete_with_events(agents, ids)
    for agent_id in affected:
        assert "agent:error" in agents.event_types(agent_id)
    cluster.mesh.start_worker(next(n for n, p in cluster.mesh.workers.items() if p is victim))


def test_killing_a_replica_hands_its_runs_to_the_other(cluster: RunningMesh) -> None:
    agents = Agents(cluster, cluster.mesh.address("agent"))
    ids = _spawn_ticking(agents, 8)
    _all_executing(agents, ids)
    cluster.mesh.services["agent-2"].kill9()
    # Runs that kept going on their worker are adopted; none may stay running forever.
    _complete_with_events(agents, ids)
    log = cluster.mesh.logs / "agent-2.log"
    owned = {
        json.loads(line)["agentId"]
        for line in log.read_text().splitlines()
        if '"run assigned"' in line and json.loads(line)["agentId"] in ids
    }
    for agent_id in owned:
        sessions = agents.stub.ListAgentSessions(
            agent_service_pb2.ListAgentSessionsRequest(id=agent_id), metadata=agents.md
        ).sessions
        assert len(sessions) == 1, f"{agent_id} was restarted instead of adopted"


def test_a_run_without_progress_is_stuck_and_fails(cluster: RunningMesh) -> None:
    agents = Agents(cluster, cluster.mesh.address("agent"))
    marker = f"silent-{uuid.uuid4().hex}"
    agent = agents.spawn(["sh", "-c", f"sleep 60; echo {marker}"])
    agents.wait_state(agent.id, L.LIFECYCLE_STATE_EXECUTING)
    done = agents.wait_final(agent.id, timeout=20)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert "stuck" in done.last_error
    wait_for(lambda: not pids_with(marker), 5, "the stuck process to be killed")
    agents.wait_events(agent.id, ["agent:error"])
