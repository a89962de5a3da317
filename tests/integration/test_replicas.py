"""Every service as several replicas (issue 14 §5), on PostgreSQL and Kafka: two team-service
replicas share teams and workflows, and killing (-9) the one that drives a workflow hands it to
the other, which finishes it with exactly one agent per step attempt, timers included; two
event-service replicas store each event once in one gap-free sequence and serve every event to
the subscribers of either; the gateway sends requests to the replicas that answer."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from godel.v1 import (
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    workflow_pb2,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from godel_deploy.postgres import PostgresServer
from tests.conftest import RunningMesh, running_mesh
from tests.integration.agent_helpers import Gate
from tests.integration.event_readers import grpc_subscriber
from tests.integration.team_helpers import gated_workflow, ok
from tests.waits import poll, wait_for

pytestmark = pytest.mark.timeout(300)

W = workflow_pb2
PREFIX = "replicas"
TEAM_REPLICA = "team-2"
EVENT_REPLICA = "event-2"
# A replica silent this long is dead: short, so a takeover is quick to see.
LEASE_SECONDS = "2"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    home: Path = tmp_path_factory.mktemp("replicas")
    env = {"GODEL_TEAM_LEASE_SECONDS": LEASE_SECONDS}
    with running_mesh(home, postgres.url(), PREFIX, extra_env=env) as running:
        running.mesh.start_replica("team", TEAM_REPLICA)
        running.mesh.start_replica("event", EVENT_REPLICA)
        running.mesh.restart_gateway()  # with the replicas as endpoints
        yield running


def team_processes(cluster: RunningMesh) -> dict[str, str]:
    """The team-service processes by the instance id they drive rows under: id -> process name."""
    mesh = cluster.mesh
    found = {f"team-{mesh.ports.grpc['team']}": "team"}
    found.update({f"{n}-{g}": n for n, (role, g, _) in mesh.replicas.items() if role == "team"})
    return found


def revive(cluster: RunningMesh, name: str) -> None:
    """The team-service process `name` serves again (the next tests need both)."""
    mesh = cluster.mesh
    if mesh.services[name].alive():
        return
    if name == "team":
        mesh.start_service("team")
        mesh.wait_service("team")
    else:
        mesh.start_replica("team", name)


class Workflows:
    """WorkflowService of one team-service process."""

    def __init__(self, cluster: RunningMesh, name: str) -> None:
        self.channel = grpc.insecure_channel(cluster.mesh.replica_address(name))
        self.stub = workflow_service_pb2_grpc.WorkflowServiceStub(self.channel)
        self.md = cluster.metadata()

    def create(self, definition: Mapping[str, Any]) -> W.Workflow:
        request = workflow_service_pb2.CreateWorkflowRequest(
            definition_text=json.dumps(definition), start=True
        )
        reply: W.Workflow = self.stub.CreateWorkflow(request, metadata=self.md, timeout=15)
        return reply

    def get(self, workflow_id: str) -> W.Workflow:
        reply: W.Workflow = self.stub.GetWorkflow(
            workflow_service_pb2.GetWorkflowRequest(id=workflow_id), metadata=self.md, timeout=15
        )
        return reply

    def steps(self, workflow_id: str) -> dict[str, W.WorkflowStep]:
        reply = self.stub.ListWorkflowSteps(
            workflow_service_pb2.ListWorkflowStepsRequest(id=workflow_id, page_size=100),
            metadata=self.md,
            timeout=15,
        )
        return {s.step_id: s for s in reply.steps}

    def wait_step(
        self, workflow_id: str, step_id: str, status: W.StepStatus.ValueType, timeout: float = 60
    ) -> W.WorkflowStep:
        """The step once it is in `status` (and, running, has its agent)."""
        return poll(
            lambda: self.steps(workflow_id)[step_id],
            lambda s: s.status == status and (status != W.STEP_STATUS_RUNNING or bool(s.agent_id)),
            timeout,
            f"step {step_id} to be {W.StepStatus.Name(status)}",
            interval=0.2,
        )

    def wait_ended(self, workflow_id: str, timeout: float = 120) -> W.Workflow:
        ended = (W.WORKFLOW_STATUS_COMPLETED, W.WORKFLOW_STATUS_FAILED, W.WORKFLOW_STATUS_CANCELLED)
        return poll(
            lambda: self.get(workflow_id),
            lambda w: w.status in ended,
            timeout,
            "the workflow to end",
            interval=0.3,
        )

    def __enter__(self) -> Workflows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()


def driver(postgres: PostgresServer, workflow_id: str) -> str:
    """The instance id of the team-service replica that drives the workflow (team/replicas.py)."""
    return postgres.psql(
        f"SELECT replica FROM workflows WHERE id = '{workflow_id}'", dbname=f"{PREFIX}_team"
    ).strip()


def agents_labelled(cluster: RunningMesh, label: str) -> list[str]:
    with cluster.http() as http:
        body = ok(http.get("/api/v1/agents", params={"label": label, "pageSize": 100}))
    return [a["id"] for a in body.get("agents", [])]


@contextmanager
def driver_killed(
    cluster: RunningMesh, postgres: PostgresServer, workflow_id: str, gate: Gate
) -> Iterator[dict[str, W.WorkflowStep]]:
    """Kills (-9) the team-service process that drives the workflow, opens the gate its steps wait
    for, and gives the workflow's end as the other process finishes it; the killed one serves
    again after the block."""
    processes = team_processes(cluster)
    victim = processes[driver(postgres, workflow_id)]
    cluster.mesh.services[victim].kill9()
    survivor = next(name for name in processes.values() if name != victim)
    try:
        with Workflows(cluster, survivor) as other:
            gate.open()
            done = other.wait_ended(workflow_id)
            assert done.status == W.WORKFLOW_STATUS_COMPLETED, done
            assert team_processes(cluster)[driver(postgres, workflow_id)] == survivor
            yield other.steps(workflow_id)
    finally:
        revive(cluster, victim)


def one_agent_per_step(cluster: RunningMesh, name: str, steps: dict[str, W.WorkflowStep], *ids: str) -> None:
    for sid in ids:
        assert agents_labelled(cluster, f"{name}/{sid}") == [steps[sid].agent_id], sid


def test_killing_the_replica_that_drives_a_workflow_hands_it_to_the_other(
    cluster: RunningMesh, postgres: PostgresServer
) -> None:
    name = f"handover-{uuid.uuid4().hex[:8]}"
    gate = Gate(cluster.mesh.default_repo)
    # s2 ends only once the test lets it: after the kill.
    definition = gated_workflow(name, gate.wait)
    with Workflows(cluster, "team") as first:
        wf = first.create(definition)
        running = first.wait_step(wf.id, "s2", W.STEP_STATUS_RUNNING)
    with driver_killed(cluster, postgres, wf.id, gate) as after:
        assert after["s2"].agent_id == running.agent_id
        assert after["s3"].result.fields["output"].string_value == "three"
        one_agent_per_step(cluster, name, after, "s1", "s2", "s3")


def test_a_retry_timer_moves_with_the_workflow_to_the_other_replica(
    cluster: RunningMesh, postgres: PostgresServer
) -> None:
    """The retry of a failed step is a timer in the memory of the replica that drives the workflow:
    killed before it fires, the other replica takes the workflow over and retries the step."""
    name = f"retry-handover-{uuid.uuid4().hex[:8]}"
    gate = Gate(cluster.mesh.default_repo)
    definition = {
        "name": name,
        "command": ["sh", "-c", "{task}"],
        # Long enough to kill the replica before the retry is due, even on a busy machine.
        "retryPolicy": {"maxRetries": 1, "initialBackoff": "8s"},
        "steps": [
            {"id": "s1", "task": "echo one"},
            # Fails until the gate is open: its first attempt fails, the retry succeeds.
            {"id": "flaky", "task": f"{gate.check} && echo fixed", "retries": 1, "dependsOn": ["s1"]},
            {"id": "s3", "task": "echo three", "dependsOn": ["flaky"]},
        ],
    }
    with Workflows(cluster, TEAM_REPLICA) as first:
        wf = first.create(definition)
        first.wait_step(wf.id, "flaky", W.STEP_STATUS_RETRYING)
    with driver_killed(cluster, postgres, wf.id, gate) as after:
        assert after["flaky"].retry_count == 1
        assert after["flaky"].result.fields["output"].string_value == "fixed"
        # One agent per attempt: the failed first one and the retry.
        flaky = agents_labelled(cluster, f"{name}/flaky")
        assert len(flaky) == 2 and after["flaky"].agent_id in flaky
        one_agent_per_step(cluster, name, after, "s1", "s3")


def test_workflows_started_on_either_replica_complete(cluster: RunningMesh) -> None:
    """Requests reach either replica and agent events either consumer: every workflow completes."""
    with Workflows(cluster, "team") as one, Workflows(cluster, TEAM_REPLICA) as two:
        clients = [one, two]
        ids = [
            clients[i % 2]
            .create(
                {
                    "name": f"shared-{uuid.uuid4().hex[:8]}",
                    "command": ["sh", "-c", "{task}"],
                    "steps": [
                        {"id": "a", "task": "echo a"},
                        {"id": "b", "task": "echo b", "dependsOn": ["a"]},
                    ],
                }
            )
            .id
            for i in range(6)
        ]
        for workflow_id in ids:
            assert one.wait_ended(workflow_id).status == W.WORKFLOW_STATUS_COMPLETED


def consumed_by_store(admin_port: int) -> float:
    """Events the event-store consumer of one event-service process has handled (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).text
    pattern = r'^godel_events_consumed_total\{group="godel-event-store"\} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def saw(events: list[event_pb2.Event], count: int) -> bool:
    return len(events) >= count


def stored_sequences(channel: grpc.Channel, md: list[tuple[str, str]], first: int, last: int) -> list[int]:
    """Every stored sequence number from `first` to `last`, whatever the event."""
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    found: list[int] = []
    after = first - 1
    while after < last:
        page = stub.QueryEvents(
            event_service_pb2.QueryEventsRequest(after_sequence=after, page_size=500), metadata=md, timeout=15
        ).events
        if not page:
            break
        found += [e.sequence for e in page if e.sequence <= last]
        after = page[-1].sequence
    return found


def test_two_event_replicas_store_each_event_once_and_serve_every_subscriber(cluster: RunningMesh) -> None:
    mesh = cluster.mesh
    kind = f"replicas-{uuid.uuid4().hex[:8]}"
    targets = {"event": mesh.address("event"), EVENT_REPLICA: mesh.replica_address(EVENT_REPLICA)}
    admin = {"event": mesh.ports.admin["event"], EVENT_REPLICA: mesh.replicas[EVENT_REPLICA][2]}
    received: dict[str, list[event_pb2.Event]] = {name: [] for name in targets}
    stop = threading.Event()
    readies = {name: threading.Event() for name in targets}
    threads = [
        threading.Thread(
            target=grpc_subscriber,
            args=(cluster, f"{kind}:*", received[name].append, readies[name], stop),
            kwargs={"target": target},
            daemon=True,
        )
        for name, target in targets.items()
    ]
    for thread in threads:
        thread.start()
    try:
        for name, ready in readies.items():
            assert ready.wait(30), f"the subscription on {name} did not open"
        before = {name: consumed_by_store(port) for name, port in admin.items()}
        published: list[str] = []
        channels = [grpc.insecure_channel(t) for t in targets.values()]
        try:
            for i in range(40):
                # Keys spread over the partitions, hence over both replicas' consumers.
                request = event_service_pb2.PublishEventRequest(
                    type=f"{kind}:ping", metadata=event_pb2.EventMetadata(agent_id=str(uuid.uuid4()))
                )
                reply = event_service_pb2_grpc.EventServiceStub(channels[i % 2]).PublishEvent(
                    request, metadata=cluster.metadata(), timeout=15
                )
                published.append(reply.id)
            for name in received:
                wait_for(
                    partial(saw, received[name], len(published)),
                    60,
                    f"the subscriber on {name} to see every event",
                    interval=0.2,
                    describe=partial(len, received[name]),
                )
            for name, events in received.items():
                assert sorted(e.id for e in events) == sorted(published), name  # each once
                sequences = [e.sequence for e in events]
                assert sequences == sorted(set(sequences)), name  # in sequence order
            stored = received["event"]
            assert [e.sequence for e in received[EVENT_REPLICA]] == [e.sequence for e in stored]
            # One gap-free sequence: nothing else was numbered between our events' numbers.
            first, last = stored[0].sequence, stored[-1].sequence
            assert stored_sequences(channels[0], cluster.metadata(), first, last) == list(
                range(first, last + 1)
            )
            # Both replicas stored events (each its share of the partitions).
            after = {name: consumed_by_store(port) for name, port in admin.items()}
            assert all(after[name] > before[name] for name in admin), (before, after)
        finally:
            for channel in channels:
                channel.close()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def gateway_endpoints(cluster: RunningMesh, name: str) -> dict[str, str]:
    """The endpoints of a gateway cluster and their health flags, as Envoy's admin /clusters says."""
    assert cluster.mesh.gateway is not None
    text = httpx.get(f"{cluster.mesh.gateway.admin_url}/clusters", timeout=10).text
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == name and parts[2] == "health_flags":
            found[parts[1]] = parts[3]
    return found


def test_the_gateway_fails_over_when_a_replica_is_killed(cluster: RunningMesh) -> None:
    mesh = cluster.mesh
    team = sorted(mesh.addresses("team"))
    wait_for(
        lambda: (
            sorted(a for a, flags in gateway_endpoints(cluster, "godel_team").items() if flags == "healthy")
            == team
        ),
        30,
        "both team-service replicas to be healthy endpoints of the gateway",
        interval=0.3,
        describe=lambda: gateway_endpoints(cluster, "godel_team"),
    )
    victim = mesh.replica_address(TEAM_REPLICA)
    mesh.services[TEAM_REPLICA].kill9()
    try:
        answered: list[int] = []

        def thirty_in_a_row() -> bool:
            with cluster.http() as http:
                for _ in range(30):
                    status = http.get("/api/v1/workflows", params={"pageSize": 1}).status_code
                    answered.append(status)
                    if status != 200:
                        return False
            return True

        # Requests keep being answered: by the replica that is left.
        wait_for(
            thirty_in_a_row,
            15,
            "30 requests in a row answered through the gateway",
            describe=lambda: answered[-5:],
        )
        # The gateway has taken the killed replica out (failed health checks or ejected).
        wait_for(
            lambda: gateway_endpoints(cluster, "godel_team").get(victim, "healthy") != "healthy",
            15,
            "the gateway to mark the killed replica unhealthy",
            interval=0.3,
            describe=lambda: gateway_endpoints(cluster, "godel_team"),
        )
    finally:
        revive(cluster, TEAM_REPLICA)
    wait_for(
        lambda: gateway_endpoints(cluster, "godel_team").get(victim) == "healthy",
        30,
        "the revived replica to be a healthy endpoint again",
        interval=0.3,
        describe=lambda: gateway_endpoints(cluster, "godel_team"),
    )
