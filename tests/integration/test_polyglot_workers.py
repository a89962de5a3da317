"""Workers in other languages on the worker protocol: the Go worker (clients/go/cmd/godel-worker)
and the TypeScript worker (`godel-worker-ts` of the npm package, clients/ts/src/worker) run
`command` agents that ask for them (config.workerSelector) in a sandboxed worktree and report
their commits; an agent whose selector no worker matches waits and says why; killing the Go worker
in the middle of a run hands the run to another worker."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from godel.v1 import agent_pb2, agent_service_pb2
from godel_deploy.process import ManagedProcess
from tests.conftest import RunningMesh
from tests.integration import client_builds
from tests.integration.agent_helpers import Agents
from tests.waits import wait_for

L = agent_pb2
COMMIT = "echo {agent_id} > out.txt && git add out.txt && git commit -qm 'from {language}'"


@pytest.fixture(scope="module")
def go_worker_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("go-worker") / "godel-worker"
    client_builds.run(
        ["go", "build", "-o", str(out), "./cmd/godel-worker"], client_builds.REPO / "clients" / "go"
    )
    return out


@pytest.fixture(scope="module")
def go_workers(godel: RunningMesh, go_worker_binary: Path) -> Iterator[dict[str, ManagedProcess]]:
    """Two Go workers (go-a, go-b) on the shared mesh, stopped (and forgotten) at the end."""
    names = ("go-a", "go-b")
    procs = {
        name: godel.mesh.start_worker(
            name,
            capacity=2,
            argv=[str(go_worker_binary)],
            env={"GODEL_WORKER_ID": name, "GODEL_WORKER_LABELS": "pool=polyglot"},
        )
        for name in names
    }
    try:
        yield procs
    finally:
        for name in names:
            godel.mesh.workers.pop(name).stop(timeout=15)


@pytest.fixture(scope="module")
def ts_worker(
    godel: RunningMesh, npm_tarball: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    """The TypeScript worker (ts-a), installed from the npm tarball into a fresh project."""
    command = client_builds.install_ts_worker(npm_tarball, tmp_path_factory.mktemp("ts-worker") / "app")
    proc = godel.mesh.start_worker(
        "ts-a",
        capacity=2,
        argv=[str(command)],
        env={"GODEL_WORKER_ID": "ts-a", "GODEL_WORKER_LABELS": "pool=polyglot"},
    )
    try:
        yield proc
    finally:
        godel.mesh.workers.pop("ts-a").stop(timeout=15)


def _workers(agents: Agents) -> dict[str, agent_pb2.Worker]:
    response = agents.stub.ListWorkers(agent_service_pb2.ListWorkersRequest(), metadata=agents.md, timeout=10)
    return {w.id: w for w in response.workers}


def _wait_connected(agents: Agents, names: tuple[str, ...]) -> dict[str, agent_pb2.Worker]:
    wait_for(lambda: all(n in _workers(agents) for n in names), 60, f"workers {names} to connect")
    return _workers(agents)


def _spawn(agents: Agents, language: str, argv: list[str], max_retries: int = 0) -> agent_pb2.Agent:
    config = agent_pb2.AgentConfig(worker_selector={"language": language})
    return agents.spawn(argv, task=f"a {language} agent", config=config, max_retries=max_retries)


def _run_workers(agents: Agents, agent_id: str) -> list[str]:
    sessions = agents.stub.ListAgentSessions(
        agent_service_pb2.ListAgentSessionsRequest(id=agent_id, page_size=50), metadata=agents.md, timeout=10
    ).sessions
    return [s.metadata["workerId"] for s in sorted(sessions, key=lambda s: s.created_at.ToDatetime())]


def test_go_worker_advertises_its_labels(godel: RunningMesh, go_workers: dict[str, ManagedProcess]) -> None:
    workers = _wait_connected(Agents(godel), ("go-a", "go-b"))
    assert dict(workers["go-a"].labels) == {"language": "go", "pool": "polyglot"}
    assert list(workers["go-a"].runtimes) == ["command"]
    python = [w for w in workers.values() if w.labels.get("language") == "python"]
    assert python, "the mesh's Python worker advertises language=python"


def _runs_sandboxed_and_commits(godel: RunningMesh, language: str, names: tuple[str, ...]) -> None:
    agents = Agents(godel)
    _wait_connected(agents, names)
    # In the sandbox the mesh's keys do not exist (the home is visible only as the parent of the
    # default repository, which is bound into the sandbox).
    key = godel.mesh.key_path("worker")
    assert key.is_file()
    hidden = f"test ! -e {key} && "
    agent = _spawn(agents, language, ["sh", "-c", hidden + COMMIT.replace("{language}", language)])
    done = agents.wait_final(agent.id, timeout=90)
    logs = [e.message for e in agents.logs(agent.id)]
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, (done.last_error, logs)
    assert len(done.commits) == 1
    assert _run_workers(agents, agent.id)[0] in names
    assert not any("sandbox: OFF" in line for line in logs), logs


def test_an_agent_that_asks_for_go_runs_on_a_go_worker_and_commits(
    godel: RunningMesh, go_workers: dict[str, ManagedProcess]
) -> None:
    _runs_sandboxed_and_commits(godel, "go", ("go-a", "go-b"))


def test_the_typescript_worker_advertises_its_labels(godel: RunningMesh, ts_worker: ManagedProcess) -> None:
    workers = _wait_connected(Agents(godel), ("ts-a",))
    assert dict(workers["ts-a"].labels) == {"language": "typescript", "pool": "polyglot"}
    assert list(workers["ts-a"].runtimes) == ["command"]


def test_an_agent_that_asks_for_typescript_runs_on_the_typescript_worker_and_commits(
    godel: RunningMesh, ts_worker: ManagedProcess
) -> None:
    _runs_sandboxed_and_commits(godel, "typescript", ("ts-a",))


def test_an_agent_no_worker_matches_waits_and_says_why(
    godel: RunningMesh, go_workers: dict[str, ManagedProcess]
) -> None:
    agents = Agents(godel)
    agent = _spawn(agents, "cobol", ["true"])
    waiting = agents.wait(agent.id, lambda a: a.pending_reason == L.PENDING_REASON_NO_RUNTIME, 30, "waiting")
    assert "labels language=cobol" in waiting.pending_message
    agents.stub.KillAgent(agent_service_pb2.KillAgentRequest(id=agent.id), metadata=agents.md, timeout=10)


def test_killing_the_go_worker_mid_run_hands_the_run_to_another(
    godel: RunningMesh, go_workers: dict[str, ManagedProcess]
) -> None:
    agents = Agents(godel)
    _wait_connected(agents, ("go-a", "go-b"))
    # The first run waits (its worker is killed); the second finds the marker in the reused worktree.
    script = "test -e .second || { touch .second; echo first run waits; sleep 300; }; " + COMMIT.replace(
        "{language}", "go"
    )
    agent = _spawn(agents, "go", ["sh", "-c", script], max_retries=2)
    running = agents.wait(
        agent.id,
        lambda a: a.lifecycle_state == L.LIFECYCLE_STATE_EXECUTING and bool(a.worker_id),
        60,
        "running",
    )
    first = running.worker_id
    # EXECUTING is reported when the sandbox starts, before the script has run: under load a kill
    # then could come before the marker exists, and the second run would wait too.
    wait_for(
        lambda: "first run waits" in [e.message for e in agents.logs(agent.id)],
        60,
        "the first run to leave its marker",
    )
    go_workers[first].signal_group(signal.SIGKILL)
    done = agents.wait_final(agent.id, timeout=120)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    assert len(done.commits) == 1
    runs = _run_workers(agents, agent.id)
    assert runs[0] == first and runs[-1] != first and runs[-1] in go_workers, runs
