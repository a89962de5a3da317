"""The mesh's own keys and what a waiting agent says (issue 10 §3): the last admin key cannot be
revoked; an agent no worker can take says why (no worker, no worker with its runtime, no free slot)
in GetAgent, `godel agent get` and `godel agent spawn --watch`; /health/detailed lists the workers.

One mesh without workers (on PostgreSQL), private to this module: its keys are revoked here."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from godel.v1 import agent_pb2, agent_service_pb2, auth_service_pb2, auth_service_pb2_grpc
from godel_deploy.postgres import PostgresServer
from tests.conftest import RunningMesh, godel_cli, godel_cli_lines, running_mesh
from tests.fakes.fake_worker import FakeWorker
from tests.integration.agent_helpers import Agents, rpc_error

L = agent_pb2


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    with running_mesh(tmp_path_factory.mktemp("bare"), postgres.url(), "bare", workers=0) as running:
        yield running


def _admin_keys(godel: RunningMesh) -> list[dict[str, object]]:
    with godel.http() as http:
        keys: list[dict[str, object]] = http.get("/api/v1/auth/keys", params={"pageSize": 1000}).json()[
            "apiKeys"
        ]
    return [k for k in keys if k["role"] == "admin" and not k.get("revoked")]


def _own_key_id(godel: RunningMesh, key: str) -> str:
    with godel.http(key) as http:
        return str(http.get("/api/v1/auth/whoami").json()["keyId"])


def test_the_last_active_admin_key_cannot_be_revoked(bare: RunningMesh) -> None:
    own = _own_key_id(bare, bare.admin_key)
    assert [k["id"] for k in _admin_keys(bare)] == [own]
    with bare.http() as http:
        other = http.post("/api/v1/auth/keys", json={"name": "second-admin", "role": "admin"}).json()
        # Two admin keys: either may go.
        assert http.post(f"/api/v1/auth/keys/{other['apiKey']['id']}/revoke", json={}).status_code == 200
        refused = http.post(f"/api/v1/auth/keys/{own}/revoke", json={})
        assert refused.status_code == 400, refused.text
        body = refused.json()
        assert body["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert "last active admin key" in body["message"]
        assert http.get("/api/v1/agents").status_code == 200, "the refused revocation changed nothing"

    # The same through gRPC, with the reason machine-readable in ErrorInfo.
    stub = auth_service_pb2_grpc.AuthServiceStub(bare.channel(bare.mesh.address("cluster")))
    exc = rpc_error(
        lambda: stub.RevokeApiKey(
            auth_service_pb2.RevokeApiKeyRequest(id=own), metadata=bare.metadata(), timeout=10
        )
    )
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(exc)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "LAST_ADMIN_KEY"
    assert [k["id"] for k in _admin_keys(bare)] == [own]


def test_concurrent_revocations_keep_one_admin_key(bare: RunningMesh) -> None:
    """Three admin keys revoked at once: PostgreSQL row locks let exactly two revocations through."""
    with bare.http() as http:
        created = [
            http.post("/api/v1/auth/keys", json={"name": f"admin-{i}", "role": "admin"}).json()
            for i in range(2)
        ]
    ids = [_own_key_id(bare, bare.admin_key), *(c["apiKey"]["id"] for c in created)]
    secrets = [bare.admin_key, *(c["secret"] for c in created)]

    def revoke(key_id: str) -> int:
        with bare.http(secrets[ids.index(key_id)]) as http:  # each key revokes itself
            return http.post(f"/api/v1/auth/keys/{key_id}/revoke", json={}).status_code

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(revoke, ids))
    assert sorted(codes) == [200, 200, 400], codes
    bare.admin_key = secrets[codes.index(400)]  # the module's other tests go on with this key
    assert [k["id"] for k in _admin_keys(bare)] == [ids[codes.index(400)]]


def test_a_pending_agent_without_any_worker_says_why(bare: RunningMesh) -> None:
    agents = Agents(bare)
    agent = agents.spawn(["true"], task="waits for a worker")
    waiting = agents.wait(agent.id, lambda a: a.pending_reason == L.PENDING_REASON_NO_WORKER, 30, "waiting")
    assert waiting.status == L.AGENT_STATUS_PENDING
    assert waiting.pending_message.startswith("no worker is connected to agent-service replica ")
    assert waiting.version == agent.version, "noting the reason is not a change of the agent"

    shown = godel_cli(bare, "agent", "get", agent.id)
    assert "waiting" in shown.stdout and "no worker is connected" in shown.stdout

    with bare.http() as http:
        rest = http.get(f"/api/v1/agents/{agent.id}").json()
        assert rest["pendingReason"] == "PENDING_REASON_NO_WORKER"
        health = http.get("/api/v1/health/detailed").json()
        assert http.get("/api/v1/workers").json().get("workers", []) == []
    workers = {c["name"]: c for c in health["components"]}["workers"]
    assert workers["status"] == "HEALTH_STATUS_DEGRADED" and "no worker" in workers["message"]
    assert health["status"] == "HEALTH_STATUS_DEGRADED" and health.get("workers", []) == []

    # `--watch` prints the reason and keeps waiting (here until we stop it).
    with godel_cli_lines(bare, "agent", "spawn", "watched", "--watch", "--", "true") as (watch, lines):
        watched_id = lines.next_line(30, "the agent id").strip()
        lines.wait_line(lambda line: "waiting: no worker is connected" in line, 30, "the waiting reason")
        assert watch.poll() is None, "--watch keeps waiting"
    for agent_id in (agent.id, watched_id):
        godel_cli(bare, "agent", "kill", agent_id)
        killed = agents.get(agent_id)
        assert killed.pending_reason == L.PENDING_REASON_UNSPECIFIED and not killed.pending_message


def test_placement_reasons_with_a_worker_without_the_runtime_or_free_slots(bare: RunningMesh) -> None:
    agents = Agents(bare)
    worker = FakeWorker(
        bare.mesh.address("agent"),
        bare.mesh.worker_key(),
        worker_id=f"fake-{uuid.uuid4().hex[:6]}",
        runtimes=["command"],
        capacity=1,
    ).start()
    try:
        llm = agents.spawn([], runtime="openai", task="needs an LLM runtime")
        waiting = agents.wait(
            llm.id, lambda a: a.pending_reason == L.PENDING_REASON_NO_RUNTIME, 30, "waiting"
        )
        assert (
            waiting.pending_message == "no connected worker hosts the 'openai' runtime (they host: command)"
        )

        first = agents.spawn(["true"], task="takes the only slot")
        placed = agents.wait(first.id, lambda a: a.worker_id == worker.hello.worker_id, 30, "placed")
        assert placed.pending_reason == L.PENDING_REASON_UNSPECIFIED and not placed.pending_message

        second = agents.spawn(["true"], task="finds no free slot")
        busy = agents.wait(second.id, lambda a: a.pending_reason == L.PENDING_REASON_NO_FREE_SLOT, 30, "busy")
        assert "busy (1 worker(s), 1 slot(s) in all)" in busy.pending_message

        listed = agents.stub.ListWorkers(
            agent_service_pb2.ListWorkersRequest(), metadata=agents.md, timeout=10
        )
        assert [(w.id, w.runtimes, w.capacity, w.free_slots, w.active_runs) for w in listed.workers] == [
            (worker.hello.worker_id, ["command"], 1, 0, 1)
        ]
        with bare.http() as http:
            health = http.get("/api/v1/health/detailed").json()
        assert [(w["id"], w.get("freeSlots", 0)) for w in health["workers"]] == [(worker.hello.worker_id, 0)]
        component = {c["name"]: c for c in health["components"]}["workers"]
        assert component["status"] == "HEALTH_STATUS_HEALTHY" and "0 free slot(s)" in component["message"]
        shown = godel_cli(bare, "health", check=False)
        assert worker.hello.worker_id in shown.stdout and "0/1" in shown.stdout
    finally:
        worker.stop()
    for agent_id in (llm.id, first.id, second.id):
        godel_cli(bare, "agent", "kill", agent_id, check=False)


def test_workers_are_listed_only_to_roles_that_may_read_agents(bare: RunningMesh) -> None:
    with bare.http(bare.mesh.worker_key()) as http:
        assert http.get("/api/v1/workers").status_code == 403
    with bare.http(bare.create_key("viewer")) as http:
        assert http.get("/api/v1/workers").status_code == 200
