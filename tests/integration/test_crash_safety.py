"""A crash never fails or strands an agent (issue 20), on the SQLite default and on PostgreSQL, with
real Kafka, the gateway and a bubblewrap-sandboxing worker.

During a burst of creations from six REST clients, kill -9 the agent service, the worker, or both,
and start them again: every agent created (every acknowledged one included) completes within 30 s
of the restart, none fails (maxRetries is 0, so a failure blamed on an agent would end it), none
ran twice at the same time (checked inside the sandbox: see tests/fakes/burst.py), and runs lost with
the crash are run again as reruns, not retries. And: a final update sent while the agent service is
down is kept in the worker's journal and applied once when the service is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from godel.v1 import agent_pb2
from tests.conftest import RunningMesh, running_mesh
from tests.fakes.burst import EXCLUSIVE_RUN, Burst
from tests.fakes.worker_env import git
from tests.integration.agent_helpers import Agents
from tests.integration.crash_helpers import check_ran_once_at_a_time, labelled, wait_all_completed
from tests.waits import wait_for

L = agent_pb2
pytestmark = pytest.mark.timeout(600)

CLIENTS, PER_CLIENT = 6, 8  # 48 agents per scenario
KILL_AFTER = 16  # acknowledged creations before the crash
# Seconds every agent has to complete, counted from the burst's last answer after the restart (on
# a loaded machine the burst may still be creating agents long after it).
AFTER_RESTART = 30.0
WORKER = "worker-1"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    database = request.getfixturevalue("postgres").url() if request.param == "postgres" else None
    home: Path = tmp_path_factory.mktemp(f"crash-{request.param}")
    # Default GODEL_WORKER_LOST_GRACE and leases: the guarantees hold with the shipped settings.
    with running_mesh(home, database, f"crash_{request.param}") as running:
        yield running


def _restart_agent_service(godel: RunningMesh) -> None:
    godel.mesh.start_service("agent")
    godel.mesh.wait_service("agent")


def _restart_worker(godel: RunningMesh) -> None:
    godel.mesh.start_worker(WORKER)


def _crash_during_burst(godel: RunningMesh, label: str, *, service: bool, worker: bool) -> None:
    agents = Agents(godel)
    burst = Burst(godel.rest, godel.admin_key, label, CLIENTS, PER_CLIENT).start()
    burst.wait_acknowledged(KILL_AFTER)
    # Some runs in flight: the crash must catch agents mid-run, not only queued ones.
    wait_for(
        lambda: sum(a.lifecycle_state == L.LIFECYCLE_STATE_EXECUTING for a in labelled(agents, label)) >= 4,
        30,
        "agents executing",
    )
    if worker:
        godel.mesh.workers[WORKER].kill9()
    if service:
        godel.mesh.kill_service("agent")
    if service:
        _restart_agent_service(godel)
    if worker:
        _restart_worker(godel)
    burst.join()
    acknowledged = list(burst.acknowledged)
    assert len(acknowledged) >= KILL_AFTER
    done = wait_all_completed(agents, label, acknowledged, time.monotonic() + AFTER_RESTART)
    for agent in done:
        check_ran_once_at_a_time(godel, agents, agent)
    if worker:  # its runs died with it (a restarted agent service adopts what still runs)
        assert any(a.reschedules for a in done), "the crash lost no run: the scenario tested nothing"


def test_agent_service_killed_during_a_burst(mesh: RunningMesh) -> None:
    _crash_during_burst(mesh, "crash-service", service=True, worker=False)


def test_worker_killed_during_a_burst(mesh: RunningMesh) -> None:
    _crash_during_burst(mesh, "crash-worker", service=False, worker=True)


def test_worker_and_agent_service_killed_together(mesh: RunningMesh) -> None:
    _crash_during_burst(mesh, "crash-both", service=True, worker=True)


def test_a_final_update_sent_while_the_service_is_down_is_applied_once(mesh: RunningMesh) -> None:
    agents = Agents(mesh)
    script = EXCLUSIVE_RUN[2].replace("sleep 1", "sleep 3")
    agent = agents.spawn(["sh", "-c", script], task="finishes while the service is down")
    running = agents.wait_state(agent.id, L.LIFECYCLE_STATE_EXECUTING)
    mesh.mesh.kill_service("agent")
    # The run ends meanwhile (its "end" commit), and its final update waits in the worker's journal.
    wait_for(
        lambda: (
            f"end {running.session_id}"
            in git(mesh.mesh.default_repo, "log", "--format=%s", f"godel/{agent.id}")
        ),
        30,
        "the run to end",
    )
    journal = mesh.mesh.worker_state_dir(WORKER) / "runs" / running.session_id
    wait_for(journal.exists, 10, "the final update in the worker's journal")
    _restart_agent_service(mesh)
    done = agents.wait_final(agent.id, timeout=AFTER_RESTART)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    assert (done.reschedules, done.retry_count, done.session_id) == (0, 0, running.session_id)
    check_ran_once_at_a_time(mesh, agents, done)
    types = agents.event_types(agent.id)
    assert "agent:run:lost" not in types
    wait_for(lambda: not journal.exists(), 10, "the worker to forget the acknowledged run")
