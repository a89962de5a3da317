"""Federation (README "Federation", spec §4.2) across three meshes on this machine, each with its own
ports, its own databases (on one PostgreSQL server) and its own Kafka topics (one broker, a topic
prefix per cluster):

- a: us-east-1, no worker; b: eu-west-1, one worker with one slot; c: eu-west-1, one worker,
  started only for the failover test (so that b is the only eu-west-1 cluster before it).
- Each mesh runs the cluster, event and agent services and its gateway (no team service).

The registry's own checks (scores from probes, heartbeat timeouts, affinity) run on a's registry,
with a fake cluster whose gateway is a gRPC server in this test that answers GetHealth as slowly as
the test says. The tests run in file order; the last one stops b."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from godel.v1 import system_service_pb2, system_service_pb2_grpc
from godel_client import GodelClient
from godel_client.clusters import placement
from godel_client.errors import FailedPreconditionError, NotFoundError
from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import Mesh, MeshPorts
from godel_deploy.ports import free_port, retry_on_port_taken
from godel_deploy.postgres import PostgresServer

HEARTBEAT, DEGRADED_AFTER, OFFLINE_AFTER, PROBE = 1, 3, 6, 1
MAX_LATENCY_MS, SLOW_PROBE = 1000, 0.8  # the registry's default; how slowly the fake cluster answers
ROLES = ("cluster", "event", "agent")
REGIONS = {"a": "us-east-1", "b": "eu-west-1", "c": "eu-west-1"}
# Who heartbeats to whom: a to b and c (and it places agents there); b and c to a.
PEERS = {"a": ("b", "c"), "b": ("a",), "c": ("a",)}
WORKERS = {"a": 0, "b": 1, "c": 1}
LONG_RUN = ["sh", "-c", "echo started on $GODEL_AGENT_ID; sleep 600"]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(interval)


def seconds(json_timestamp: str) -> float:
    """A timestamp of the REST API in seconds since the epoch."""
    ts = Timestamp()
    ts.FromJsonString(json_timestamp)
    return ts.seconds + ts.nanos / 1e9


def spec_score(health: dict[str, Any]) -> int:
    """Spec §4.2 calculateHealthScore over the factors a cluster's `health` reports (JSON omits zeros)."""
    f = {
        k: float(health.get(k, 0))
        for k in ("connectivity", "latencyMs", "errorRate", "capacity", "freshness")
    }
    latency = 1 - min(1.0, f["latencyMs"] / MAX_LATENCY_MS)
    raw = (
        0.25 * f["connectivity"] + 0.20 * latency + 0.25 * (1 - f["errorRate"]) + 0.20 * f["capacity"]
        + 0.10 * f["freshness"]
    )  # fmt: skip
    return round(max(0.0, min(1.0, raw)) * 100)


@dataclass
class Member:
    name: str
    mesh: Mesh
    admin_key: str

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.mesh.gateway_url, headers={"x-api-key": self.admin_key}, timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        with self.http() as http:
            reply = http.get(path, params=params)
        assert reply.status_code == 200, f"{self.name} GET {path}: {reply.status_code} {reply.text}"
        return reply.json()

    def cluster(self, name: str) -> dict[str, Any] | None:
        clusters = self.get("/api/v1/clusters", pageSize=100).get("clusters", [])
        return next((c for c in clusters if c["name"] == name), None)

    def status(self, name: str) -> str:
        """The cluster's status in this member's registry ("" when it is not registered)."""
        return str((self.cluster(name) or {}).get("status", ""))

    def events(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/events", pageSize=1000, **params).get("events", []))


@dataclass
class Federation:
    meshes: dict[str, Mesh]
    members: dict[str, Member] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Member:
        return self.members[name]

    def start(self, name: str) -> Member:
        mesh = self.meshes[name]

        def attempt(_: int) -> None:
            # Fresh ports now (others' processes may have taken some since), but the gateway's,
            # which the peers were told.
            mesh.ports = replace(MeshPorts.free(), gateway=mesh.ports.gateway)
            mesh.services.clear()  # stopped processes keep the ports they were made with
            mesh.workers.clear()
            try:
                mesh.start(ROLES)
            except BaseException:
                mesh.stop()
                raise

        retry_on_port_taken(attempt)
        self.members[name] = Member(name, mesh, (mesh.home / "admin.secret").read_text())
        return self.members[name]

    def stop(self) -> None:
        with futures.ThreadPoolExecutor(max_workers=len(self.members) or 1) as pool:
            list(pool.map(lambda member: member.mesh.stop(), self.members.values()))


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    kafka = KafkaBroker(root / "kafka").start()
    ports = {name: MeshPorts.free() for name in REGIONS}
    keys = root / "peer-keys"
    keys.mkdir()
    meshes: dict[str, Mesh] = {}
    for name, region in REGIONS.items():
        peer_list = [
            {
                "name": peer,
                "endpoint": f"127.0.0.1:{ports[peer].gateway}",
                "credentialFile": str(keys / f"{peer}-for-{name}.key"),
            }
            for peer in PEERS[name]
        ]
        meshes[name] = Mesh(
            root / name,
            kafka.bootstrap,
            ports=ports[name],
            database_url=postgres.url(),
            database_prefix=f"fed_{name}",
            workers=WORKERS[name],
            worker_capacity=1,
            extra_env={
                "GODEL_AUTH_CACHE_SECONDS": "1",
                "GODEL_OUTBOX_POLL_SECONDS": "0.2",
                "GODEL_KAFKA_TOPIC_PREFIX": f"fed-{name}.",
                "GODEL_CLUSTER_NAME": name,
                "GODEL_CLUSTER_REGION": region,
                "GODEL_CLUSTER_ENDPOINT": f"127.0.0.1:{ports[name].gateway}",
                "GODEL_FEDERATION_PEERS": json.dumps(peer_list),
                "GODEL_CLUSTER_HEARTBEAT_SECONDS": str(HEARTBEAT),
                "GODEL_CLUSTER_DEGRADED_AFTER": str(DEGRADED_AFTER),
                "GODEL_CLUSTER_OFFLINE_AFTER": str(OFFLINE_AFTER),
                "GODEL_CLUSTER_PROBE_SECONDS": str(PROBE),
                "GODEL_CLUSTER_ROUTING": "round-robin",
            },
        )

    def issue_keys(name: str) -> None:
        """The mesh's admin key, and the keys it issues to the peers that call it."""
        mesh = meshes[name]
        mesh.logs.mkdir(parents=True, exist_ok=True)
        admin = mesh.create_api_key(f"admin-{name}", "admin")
        assert admin
        (mesh.home / "admin.secret").write_text(admin)
        for caller, peers in PEERS.items():
            if name in peers:
                key = mesh.create_api_key(f"peer-{caller}", "peer")
                assert key
                (keys / f"{name}-for-{caller}.key").write_text(key)

    fed = Federation(meshes)
    try:
        # Each mesh has its own databases: their keys are made at once, and a and b start at once
        # (this setup is most of the module's time on a loaded machine).
        with futures.ThreadPoolExecutor(max_workers=len(REGIONS)) as pool:
            list(pool.map(issue_keys, REGIONS))
            kafka.wait_ready()
            list(pool.map(fed.start, ("a", "b")))
        yield fed
    finally:
        fed.stop()
        kafka.stop()


# ---- the registry: scores from probes, heartbeat timeouts, affinity ---------------------------


class SlowHealth(system_service_pb2_grpc.SystemServiceServicer):
    """A cluster gateway that answers GetHealth after `delay` seconds."""

    def __init__(self) -> None:
        self.delay = 0.0

    def GetHealth(self, request: Any, context: grpc.ServicerContext) -> system_service_pb2.GetHealthResponse:
        time.sleep(self.delay)
        return system_service_pb2.GetHealthResponse(status=system_service_pb2.HEALTH_STATUS_HEALTHY)


@pytest.fixture
def slow_gateway() -> Iterator[tuple[SlowHealth, str]]:
    health = SlowHealth()  # type: ignore[abstract]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(health, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield health, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_a_silent_cluster_goes_degraded_then_offline_and_its_score_follows_probe_latency(
    federation: Federation, slow_gateway: tuple[SlowHealth, str]
) -> None:
    a = federation["a"]
    health, endpoint = slow_gateway
    name = f"probe-target-{uuid.uuid4().hex[:6]}"
    with a.http() as http:
        cluster = http.post(
            "/api/v1/clusters",
            json={"name": name, "region": "ap-south-1", "endpoint": endpoint, "maxAgents": 10},
        ).json()
        stop_beating = threading.Event()

        def beat() -> None:
            with a.http() as beats:
                while not stop_beating.wait(HEARTBEAT / 2):
                    beats.post(f"/api/v1/clusters/{cluster['id']}/heartbeat", json={"currentAgents": 5})

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
        try:
            fast = wait_for(
                "five fast probes",
                lambda: (c := a.cluster(name)) and c.get("health", {}).get("probes", 0) >= 5 and c,
                timeout=60,
            )
            assert fast["status"] == "CLUSTER_STATUS_ONLINE"
            assert fast["health"]["connectivity"] == 1 and fast["health"]["latencyMs"] < 250
            assert abs(fast["healthScore"] - spec_score(fast["health"])) <= 1, fast  # factors rounded
            # The score is the registry's: a heartbeat's own score is ignored.
            http.post(
                f"/api/v1/clusters/{cluster['id']}/heartbeat", json={"currentAgents": 5, "healthScore": 3}
            )
            assert (a.cluster(name) or {})["healthScore"] > 50
            health.delay = SLOW_PROBE
            # Half of the ten-probe window slow: the mean is at least half the slow latency.
            slow = wait_for(
                "the probes' latency to rise",
                lambda: (c := a.cluster(name)) and c["health"]["latencyMs"] >= SLOW_PROBE * 1000 / 2 and c,
                timeout=90,
            )
            # The same formula over the factors the registry observed: the latency term fell (by at
            # least 0.20 x 150 ms / 1000 ms of 100 points); freshness may differ on a loaded machine.
            assert abs(slow["healthScore"] - spec_score(slow["health"])) <= 1, slow  # factors rounded
            assert slow["health"]["latencyMs"] >= fast["health"]["latencyMs"] + 150
        finally:
            stop_beating.set()
            beater.join()
        wait_for("degraded", lambda: a.status(name) != "CLUSTER_STATUS_ONLINE", timeout=60)
        assert a.status(name) in ("CLUSTER_STATUS_DEGRADED", "CLUSTER_STATUS_OFFLINE")
        wait_for("offline", lambda: a.status(name) == "CLUSTER_STATUS_OFFLINE", timeout=60)

        def status_changes() -> list[dict[str, Any]]:
            return [
                e
                for e in a.events(type="cluster:status")
                if e["clusterStatusChanged"]["cluster"]["name"] == name
            ]

        # The registry answers OFFLINE as soon as it decides; its event reaches the store later.
        changes = wait_for(
            "the offline event in the store",
            lambda: (
                (c := status_changes())
                and c[-1]["clusterStatusChanged"]["cluster"]["status"] == "CLUSTER_STATUS_OFFLINE"
                and c
            ),
        )
        statuses = [e["clusterStatusChanged"] for e in changes]
        assert [e["cluster"]["status"] for e in statuses][-2:] == [
            "CLUSTER_STATUS_DEGRADED",
            "CLUSTER_STATUS_OFFLINE",
        ], statuses
        assert statuses[-1]["reason"] == f"no heartbeat for more than {OFFLINE_AFTER}s"
        # Offline after the timeout and within a probe interval of it, by the registry's clock (this
        # test's polling slowed by a loaded machine cannot fail it; the registry's tick may lag: 5 s).
        silence = seconds(changes[-1]["timestamp"]) - seconds(statuses[-1]["cluster"]["lastHeartbeat"])
        assert OFFLINE_AFTER < silence < OFFLINE_AFTER + PROBE + 5, silence
        assert all(e["source"]["cluster"] == "a" for e in a.events(type="cluster:status"))
        assert http.get("/api/v1/clusters", params={"status": "CLUSTER_STATUS_OFFLINE"}).json()["clusters"]
        assert http.delete(f"/api/v1/clusters/{cluster['id']}").status_code == 200
        assert http.get(f"/api/v1/clusters/{cluster['id']}").status_code == 404
        assert http.delete(f"/api/v1/clusters/{cluster['id']}").status_code == 404
    wait_for(
        "the unregister event in the store",
        lambda: [
            e
            for e in a.events(type="cluster:unregister")
            if e["clusterUnregistered"]["cluster"]["name"] == name
        ],
    )


def test_members_register_with_each_other_and_lookups_filter(federation: Federation) -> None:
    a, b = federation["a"], federation["b"]
    wait_for("b online in a's registry", lambda: a.status("b") == "CLUSTER_STATUS_ONLINE")
    wait_for("a online in b's registry", lambda: b.status("a") == "CLUSTER_STATUS_ONLINE")
    local = wait_for("a in its own registry", lambda: a.cluster("a"))
    assert local["local"] and local["region"] == "us-east-1" and local.get("maxAgents", 0) == 0
    remote = a.cluster("b")
    assert remote and not remote.get("local") and remote["maxAgents"] == 1  # b's worker has one slot
    assert [c["name"] for c in a.get("/api/v1/clusters", region="eu-west-1")["clusters"]] == ["b"]


def test_a_session_stays_on_its_cluster_until_its_affinity_is_cleared(federation: Federation) -> None:
    a = federation["a"]
    session = f"s-{uuid.uuid4().hex[:8]}"
    with GodelClient(a.mesh.gateway_address, a.admin_key) as client:
        clusters = client.clusters
        bound = clusters.set_affinity(session, "b")
        assert bound.cluster_id == clusters.get("b").id
        for _ in range(4):
            reply = clusters.route(session_id=session, strategy="round-robin")
            assert reply.cluster.name == "b" and reply.affinity, reply
        assert clusters.get_affinity(session).cluster_id == bound.cluster_id
        with a.http() as http:  # the same over REST
            assert http.get(f"/api/v1/cluster-affinities/{session}").json()["clusterId"] == bound.cluster_id
            assert http.delete(f"/api/v1/cluster-affinities/{session}").status_code == 200
            assert http.get(f"/api/v1/cluster-affinities/{session}").status_code == 404
        with pytest.raises(NotFoundError):
            clusters.get_affinity(session)
        first = clusters.route(session_id=session, strategy="round-robin")
        assert not first.affinity and set(first.eligible) == {"a", "b"}
        # Routing bound the session again, to whatever round-robin chose.
        assert clusters.get_affinity(session).cluster_id == first.cluster.id
        clusters.clear_affinity(session)
        plain = {clusters.route(strategy="round-robin").cluster.name for _ in range(2)}
        assert plain == {"a", "b"}
        assert clusters.route(region="eu-west-1", require_region=True).cluster.name == "b"
        with pytest.raises(FailedPreconditionError, match="no cluster meets"):
            clusters.route(region="ap-south-1", require_region=True)
    with a.http() as http:
        bad = http.post("/api/v1/clusters:route", json={"requireRegion": True, "minCapacity": -1})
    assert bad.status_code == 400 and {"region", "min_capacity"} <= {
        v["field"] for d in bad.json()["details"] for v in d.get("fieldViolations", [])
    }


# ---- agents across clusters ---------------------------------------------------------------------


def create_in_eu(member: Member, label: str) -> dict[str, Any]:
    with member.http() as http:
        reply = http.post(
            "/api/v1/agents",
            json={
                "task": f"federated {label}",
                "label": label,
                "config": {"runtime": "command", "command": LONG_RUN},
                "placement": {"region": "eu-west-1"},
            },
        )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def agent(member: Member, agent_id: str) -> dict[str, Any]:
    return dict(member.get(f"/api/v1/agents/{agent_id}"))


def agent_if_reachable(member: Member, agent_id: str) -> dict[str, Any]:
    """The agent, or {} while the cluster that runs it cannot be reached (503)."""
    with member.http() as http:
        reply = http.get(f"/api/v1/agents/{agent_id}")
    assert reply.status_code in (200, 503), reply.text
    return dict(reply.json()) if reply.status_code == 200 else {}


def test_an_agent_that_needs_another_region_runs_on_a_peer_and_answers_through_both(
    federation: Federation,
) -> None:
    a, b = federation["a"], federation["b"]
    created = create_in_eu(a, "across")
    agent_id = created["id"]
    try:
        assert created["cluster"] == "b"
        running = wait_for(
            "the agent to run on b",
            lambda: (x := agent(a, agent_id))["status"] == "AGENT_STATUS_RUNNING" and x,
        )
        assert running["cluster"] == "b" and running["workerId"]
        assert agent(b, agent_id)["id"] == agent_id  # one id on both clusters
        logs = f"/api/v1/agents/{agent_id}/logs"
        lines = wait_for(
            "its log line through a",
            # JSON omits an empty list: no "entries" until the first line has come.
            lambda: [e for e in a.get(logs).get("entries", []) if "started on" in e["message"]],
        )
        assert agent_id in lines[0]["message"]
        spawned = wait_for("its events in a's store", lambda: a.events(agentId=agent_id, type="agent:start"))
        assert spawned[0]["source"]["cluster"] == "b"
        with a.http() as http:
            killed = http.post(f"/api/v1/agents/{agent_id}/kill", json={"reason": "done with it"})
            assert killed.status_code == 200, killed.text
            assert killed.json()["status"] == "AGENT_STATUS_KILLED"
        assert agent(b, agent_id)["status"] == "AGENT_STATUS_KILLED"
        kill = wait_for("agent:kill copied to a", lambda: a.events(agentId=agent_id, type="agent:kill"))
        assert (
            kill[0]["agentKilled"]["transition"]["reason"] == "done with it"
            and kill[0]["source"]["cluster"] == "b"
        )
        listed = a.get(f"/api/v1/agents/{agent_id}/events").get("events", [])
        assert {"agent:spawn", "agent:start", "agent:kill"} <= {e["type"] for e in listed}
        # Only a peer may say on whose behalf it calls.
        with httpx.Client(base_url=b.mesh.gateway_url, timeout=15) as http:
            forged = http.get(
                f"/api/v1/agents/{agent_id}",
                headers={
                    "x-api-key": b.admin_key,
                    "x-godel-forwarded-role": "admin",
                    "x-godel-origin-cluster": "x",
                },
            )
        assert forged.status_code == 403 and "only a federation peer" in forged.json()["message"]
    finally:
        # It holds b's only slot: a failure above must not leave it to fail the next test too.
        with a.http() as http:
            http.post(f"/api/v1/agents/{agent_id}/kill", json={"reason": "end of test"})


def test_a_peer_going_offline_moves_its_pending_agents_to_another_cluster(federation: Federation) -> None:
    a, b = federation["a"], federation["b"]
    first = create_in_eu(a, "first")
    wait_for("the first agent to run on b", lambda: agent(a, first["id"])["status"] == "AGENT_STATUS_RUNNING")
    with GodelClient(a.mesh.gateway_address, a.admin_key) as client:  # b's only slot is taken: it waits
        placed = client.agents.create(
            "federated second", label="second", command=LONG_RUN, placement=placement(region="eu-west-1")
        )
    second = {"id": placed.id}
    assert placed.cluster == "b"
    wait_for(
        "the second agent to wait on b for a slot",
        lambda: agent(a, second["id"]).get("pendingReason") == "PENDING_REASON_NO_FREE_SLOT",
    )
    c = federation.start("c")
    wait_for("c online in a's registry", lambda: a.status("c") == "CLUSTER_STATUS_ONLINE")
    b.mesh.stop()
    stopped = time.monotonic()
    moved = wait_for(
        "the waiting agent to be placed on c",
        lambda: (x := agent_if_reachable(a, second["id"])).get("cluster") == "c" and x,
        timeout=60,
    )
    assert time.monotonic() - stopped < OFFLINE_AFTER + 30
    assert moved["id"] == second["id"]
    wait_for("it to run on c", lambda: agent(c, second["id"])["status"] == "AGENT_STATUS_RUNNING")
    failover = wait_for("the failover event", lambda: a.events(type="cluster:failover", agentId=second["id"]))
    assert (
        failover[0]["clusterFailover"]["fromCluster"] == "b"
        and failover[0]["clusterFailover"]["toCluster"] == "c"
    )
    wait_for(
        "its events from c in a",
        lambda: [
            e for e in a.events(agentId=second["id"], type="agent:start") if e["source"]["cluster"] == "c"
        ],
    )
    # The agent that had started stays where it is: b is gone, so a cannot answer for it.
    with a.http() as http:
        gone = http.get(f"/api/v1/agents/{first['id']}")
    assert gone.status_code == 503 and "peer cluster b" in gone.json()["message"]
