"""Failover of agent execution: two agent-service replicas and two workers on PostgreSQL and Kafka.
Killing (-9) a worker or a replica in the middle of runs reruns or adopts every affected agent
elsewhere within 15 s (a rerun is not the agent's failure: no retry is used up), no agent stays
running forever and no event is lost. Also: stuck runs."""

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
from tests.integration.agent_helpers import Agents, pids_with
from tests.waits import wait_for

L = agent_pb2
pytestmark = pytest.mark.timeout(300)

TICKS = "for i in $(seq 1 16); do echo tick $i; sleep 0.5; done"  # 8 s, never silent for long


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    env = {
        "GODEL_AGENT_LEASE_SECONDS": "3",
        # Workers stop a run after 2/3 of it without contact: longer than a replica's takeover
        # (lease 3 s + a supervision pass), so the runs of a killed replica are adopted, not rerun.
        "GODEL_WORKER_LOST_GRACE": "10",
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
    victim_name = next(name for name in cluster.mesh.workers if cluster.mesh.worker_id(name) == victim_id)
    victim = cluster.mesh.workers[victim_name]
    victim.kill9()
    try:
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
            assert moved.reschedules >= 1 or moved.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED
            assert moved.retry_count == 0
        assert time.monotonic() - killed_at < 15.5
        _complete_with_events(agents, ids)
        for agent_id in affected:
            types = agents.wait_events(agent_id, ["agent:run:lost", "agent:run:rescheduled"])
            assert "agent:error" not in types
    finally:
        cluster.mesh.start_worker(victim_name)


def _assigned_by(cluster: RunningMesh, replica: str, ids: list[str]) -> set[str]:
    """The agents among `ids` whose runs `replica` assigned to a worker (from its log)."""
    lines = (cluster.mesh.logs / f"{replica}.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if '"run assigned"' in line]
    return {r["agentId"] for r in records if r.get("agentId") in ids}


def test_killing_a_replica_hands_its_runs_to_the_other(cluster: RunningMesh) -> None:
    agents = Agents(cluster, cluster.mesh.address("agent"))
    # Runs reach the replicas through Kafka partitions: spawn until agent-2 runs some of them, so
    # the kill takes runs away from it (each batch is executing, hence still running, at the kill).
    ids: list[str] = []
    owned: set[str] = set()
    for _ in range(5):
        batch = _spawn_ticking(agents, 4)
        ids += batch
        _all_executing(agents, batch)
        owned = _assigned_by(cluster, "agent-2", batch)
        if owned:
            break
    assert owned, "agent-2 was assigned none of the runs: its kill would hand nothing over"
    cluster.mesh.services["agent-2"].kill9()
    try:
        # Runs that kept going on their worker are adopted; none may stay running forever.
        _complete_with_events(agents, ids)
        for agent_id in owned:
            sessions = agents.stub.ListAgentSessions(
                agent_service_pb2.ListAgentSessionsRequest(id=agent_id), metadata=agents.md
            ).sessions
            assert len(sessions) == 1, f"{agent_id} was restarted instead of adopted"
    finally:
        cluster.mesh.start_agent_replica("agent-2")


def test_a_run_without_progress_is_stuck_and_fails(cluster: RunningMesh) -> None:
    agents = Agents(cluster, cluster.mesh.address("agent"))
    marker = f"silent-{uuid.uuid4().hex}"
    agent = agents.spawn(["sh", "-c", f"sleep 60; echo {marker}"])
    agents.wait_state(agent.id, L.LIFECYCLE_STATE_EXECUTING)
    done = agents.wait_final(agent.id, timeout=20)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert "stuck" in done.last_error
    wait_for(lambda: not pids_with(marker), 15, "the stuck process to be killed")
    agents.wait_events(agent.id, ["agent:error"])
