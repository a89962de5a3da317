"""Several hosts on one machine (issue 14 §6): every host is a Linux network namespace with its own
address on a private bridge the test makes (tests/integration/netns.py), and runs what a host of a
real deployment runs, started by the same launchers and commands:

    k1 k2 k3   Kafka brokers (KRaft quorum of three; topics RF 3, min.insync.replicas 2)
    pg         PostgreSQL
    s1 s2      one replica of every service (the compose file's commands, settings and health
               checks) and a worker (compose's worker-1 and worker-2)
    gw         the gateway (`godel-gateway`: Envoy, each cluster listing both service hosts)
    client     the test itself: its requests go through the gateway

Under a bounded load of agent creates, with a team and a workflow running, the service host whose
team-service replica drives the workflow dies (kill -9 of every process on it) and so does broker
k2. Then: the mesh answers again within 15 s of
the kill; every create the gateway acknowledged exists; every event is stored once, in one
gap-free sequence; the team and the workflow complete. Every namespace (and the veths and bridge
in it) is removed afterwards, also when the test fails."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from godel_deploy.kafka import JVM_FLAGS, KafkaBroker, random_cluster_id
from godel_deploy.mesh import ensure_repo
from godel_deploy.postgres import PostgresServer
from godel_deploy.process import ManagedProcess
from tests.integration import compose_file
from tests.integration.agent_helpers import Gate
from tests.integration.compose_file import ROLES
from tests.integration.netns import Network, iproute2_problem
from tests.integration.team_helpers import (
    echo_command,
    gated_workflow,
    ok,
    start_team,
    steps,
    wait_team,
    wait_workflow,
)
from tests.waits import poll, wait_for

pytestmark = pytest.mark.timeout(480)

KAFKA_HOSTS = ("k1", "k2", "k3")
SERVICE_HOSTS = ("s1", "s2")
HOSTS = (*KAFKA_HOSTS, "pg", *SERVICE_HOSTS, "gw", "client")
KAFKA_PORT, CONTROLLER_PORT, POSTGRES_PORT = 9092, 9093, 5432
GATEWAY_PORT = 7373
DEAD_BROKER = "k2"
RECOVERY_SECONDS = 15.0
# Agent creates of the load: at most this many, two at a time.
LOAD_LIMIT = 60
BIN = Path(sys.executable).parent
# Small brokers: three JVMs share two busy cores with everything else.
KAFKA_JVM = ("-Xms128m", "-Xmx256m", *(f for f in JVM_FLAGS if not f.startswith("-Xm")))
# Kafka's own topics are replicated too; Godel's get RF 3 and min.insync.replicas 2 from Godel's
# settings alone (the brokers' defaults stay 1).
KAFKA_CLUSTER = {
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "num.io.threads": "2",
}
# What the test sets beyond the compose file: the production topic settings (the chart's values),
# short leases so takeovers are quick to see, and its own databases.
SETTINGS = {
    "GODEL_KAFKA_REPLICATION_FACTOR": "3",
    "GODEL_KAFKA_MIN_INSYNC_REPLICAS": "2",
    "GODEL_TEAM_LEASE_SECONDS": "2",
    "GODEL_AGENT_LEASE_SECONDS": "2",
    "GODEL_AUTH_CACHE_SECONDS": "1",
    "GODEL_OUTBOX_POLL_SECONDS": "0.2",
    "GODEL_DATABASE_NAME_PREFIX": "multihost",
}


@dataclass
class Deployment:
    net: Network
    work: Path
    postgres: PostgresServer
    brokers: dict[str, KafkaBroker]
    admin_key: str = ""
    # host -> the Godel processes it runs
    processes: dict[str, list[ManagedProcess]] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.net.address('gw')}:{GATEWAY_PORT}"

    def http(self, timeout: float = 15.0) -> httpx.Client:
        return httpx.Client(base_url=self.gateway_url, headers={"x-api-key": self.admin_key}, timeout=timeout)

    def on(self, host: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """A command run to its end on `host`."""
        command = ["ip", "netns", "exec", self.net.namespace(host), *argv]
        return subprocess.run(command, env=env, cwd=self.work, capture_output=True, text=True, check=False)

    def value(self, host: str, name: str) -> Callable[[str], str]:
        """A compose value on `host`: the other services are this host's replicas (each host's
        services call their neighbours), Kafka is the three brokers, /run/secrets, /srv (the shared
        workspace volume) and the home are directories of the test."""
        address = self.net.address(host)
        names = {f"{r}:{port}": f"{address}:{port}" for r, port in compose_file.service_ports().items()}
        names["kafka:9092"] = ",".join(b.bootstrap for b in self.brokers.values())
        names["godel@postgres:5432"] = f"godel@{self.postgres.host}:{self.postgres.port}"

        def value(text: str) -> str:
            for old, new in names.items():
                text = text.replace(old, new)
            text = compose_file.container_path(text, self.work, self.work / "home" / f"{host}-{name}")
            return address if text == "0.0.0.0" else text

        return value

    def env(self, host: str, name: str, service: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
        env.update(compose_file.env(service, self.value(host, name)))
        env.update(SETTINGS, GODEL_INSTANCE_ID=f"{name}-{host}", PYTHONUNBUFFERED="1")
        return env

    def run(self, host: str, name: str, env_update: dict[str, str] | None = None) -> ManagedProcess:
        """The compose service `name` on `host`, once its health check passes."""
        service = compose_file.services()[name]
        env = {**self.env(host, name, service), **(env_update or {})}
        argv = compose_file.argv(BIN, service, self.value(host, name))
        proc = ManagedProcess(
            argv,
            self.work / "logs" / f"{host}-{name}.log",
            env=env,
            cwd=self.work,
            name=f"{name}@{host}",
            netns=self.net.namespace(host),
        ).start()
        self.processes.setdefault(host, []).append(proc)
        return proc

    def wait_healthy(self, host: str, name: str, proc: ManagedProcess) -> None:
        service = compose_file.services()[name]
        check = compose_file.health(BIN, service)
        env = proc.env or {}
        proc.wait_for(
            lambda: self.on(host, check, env).returncode == 0,
            180,
            f"{name}@{host}: {' '.join(check[1:])}",
            interval=0.5,
        )

    def lose_disks(self, host: str) -> None:
        """What a dead host's local disk becomes to the others: gone. The hosts of this test share
        one file system, so its processes' homes (and the worker's worktrees beside its home) are
        moved out of reach; the repository is on the shared volume (/srv) and stays."""
        lost = self.work / "lost" / host
        lost.mkdir(parents=True)
        for path in (self.work / "home").glob(f"{host}-*"):
            path.rename(lost / path.name)

    def stop(self) -> None:
        for procs in self.processes.values():
            for proc in reversed(procs):
                proc.stop(timeout=10)
        for broker in self.brokers.values():
            broker.stop(timeout=15)
        self.postgres.stop()


def start_kafka(net: Network, work: Path) -> dict[str, KafkaBroker]:
    voters = {i: f"{net.address(h)}:{CONTROLLER_PORT}" for i, h in enumerate(KAFKA_HOSTS, 1)}
    cluster_id = random_cluster_id()
    brokers = {
        host: KafkaBroker(
            work / host,
            KAFKA_PORT,
            CONTROLLER_PORT,
            extra_config=KAFKA_CLUSTER,
            jvm_flags=KAFKA_JVM,
            host=net.address(host),
            node_id=i,
            voters=voters,
            cluster_id=cluster_id,
            netns=net.namespace(host),
        )
        for i, host in enumerate(KAFKA_HOSTS, 1)
    }
    for broker in brokers.values():
        broker.start()
    return brokers


def start_services(d: Deployment) -> None:
    """The compose file's one-shots (on s1), services and workers (one per service host), then the
    gateway with both service hosts as endpoints of each cluster."""
    for one_shot in ("migrate", "keys"):
        service = compose_file.services()[one_shot]
        done = d.on(
            "s1", compose_file.argv(BIN, service, d.value("s1", one_shot)), d.env("s1", one_shot, service)
        )
        assert done.returncode == 0, f"{one_shot}: {done.stdout}{done.stderr}"
    started = [(host, role, d.run(host, role)) for role in ROLES for host in SERVICE_HOSTS]
    for host, role, proc in started:
        d.wait_healthy(host, role, proc)
    agents = ",".join(f"{d.net.address(h)}:{compose_file.service_ports()['agent']}" for h in SERVICE_HOSTS)
    workers = [
        (host, name, d.run(host, name, {"GODEL_WORKER_CONNECT": agents}))
        for host, name in zip(SERVICE_HOSTS, compose_file.workers(), strict=True)
    ]
    ports = compose_file.service_ports()
    endpoints = {
        f"GODEL_GATEWAY_{role.upper()}_ENDPOINTS": ",".join(
            f"{d.net.address(h)}:{ports[role]}" for h in SERVICE_HOSTS
        )
        for role in ROLES
    }
    ws = ",".join(f"{d.net.address(h)}:9113" for h in SERVICE_HOSTS)
    endpoints.update(
        GODEL_GATEWAY_EVENT_WS_ENDPOINTS=ws,
        GODEL_GATEWAY_ACCESS_LOG=str(d.work / "logs" / "gw-access.log"),
    )
    gateway = d.run("gw", "gateway", endpoints)
    for host, name, proc in [*workers, ("gw", "gateway", gateway)]:
        d.wait_healthy(host, name, proc)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    problem = iproute2_problem()
    if problem:
        pytest.fail(problem)
    work = tmp_path_factory.mktemp("multi-host")
    ports = [
        KAFKA_PORT,
        CONTROLLER_PORT,
        POSTGRES_PORT,
        GATEWAY_PORT,
        *map(int, compose_file.service_ports().values()),
    ]
    net = Network.create(HOSTS, listen_ports=ports)
    d: Deployment | None = None
    try:
        # From here on this thread is the client host: every connection it (or a thread or a
        # process it starts) opens stays on the test's bridge.
        with net.inside("client"):
            postgres = PostgresServer(
                work / "pg",
                POSTGRES_PORT,
                host=net.address("pg"),
                netns=net.namespace("pg"),
                clients=str(net.subnet),
                settings={"max_connections": "300"},
            )
            d = Deployment(net, work, postgres, {})
            postgres.start()
            d.brokers = start_kafka(net, work)
            postgres.wait_ready()
            # The compose file's database user (trusted: the password file is sent, not checked).
            postgres.psql("CREATE ROLE godel LOGIN CREATEDB")
            for broker in d.brokers.values():
                broker.wait_ready(180)
            first = d.brokers[KAFKA_HOSTS[0]]
            first.process.wait_for(lambda: first.brokers() == 3, 120, "three brokers in the metadata")
            env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
            secrets = compose_file.generate_keys(BIN / "godel-server", work / "run-secrets", env)
            ensure_repo(work / "srv" / "workspace" / "repo")
            start_services(d)
            d.admin_key = (secrets / "keys" / "admin.key").read_text().strip()
            yield d
    finally:
        if d is not None:
            d.stop()
        left = net.remove()
        assert not left, f"network namespaces left behind: {left}"


class Load:
    """Agent creates through the gateway, two at a time, at most `limit`: which were acknowledged
    (the gateway answered 200 with the agent) and which failed."""

    def __init__(self, d: Deployment, limit: int) -> None:
        self.d = d
        self.limit = limit
        self.acked: list[tuple[float, str]] = []
        self.failed: list[str] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Threads started by this (client-namespace) thread are the client's too.
        self._threads = [threading.Thread(target=self._run, name=f"load-{i}", daemon=True) for i in range(2)]

    def _next(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or self.sent >= self.limit:
                return None
            self.sent += 1
            return self.sent

    def _run(self) -> None:
        with self.d.http(timeout=10) as http:
            while (n := self._next()) is not None:
                body = {
                    "task": f"load {n}",
                    "config": {"runtime": "command", "command": ["sh", "-c", "echo load"]},
                }
                try:
                    reply = http.post("/api/v1/agents", json=body)
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))
                    continue
                if reply.status_code == 200:
                    self.acked.append((time.monotonic(), reply.json()["id"]))
                else:
                    self.failed.append(f"{reply.status_code} {reply.text[:200]}")

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def acked_after(self, moment: float) -> int:
        return sum(1 for at, _ in self.acked if at > moment)


def answers(http: httpx.Client) -> bool:
    """Every service answers through the gateway: agent, team, event and cluster."""
    paths = (
        "/api/v1/agents?pageSize=1",
        "/api/v1/teams?pageSize=1",
        "/api/v1/events?pageSize=1",
        "/api/v1/auth/whoami",
    )
    try:
        return all(http.get(path, timeout=3).status_code == 200 for path in paths)
    except httpx.HTTPError:
        return False


def driver(d: Deployment, table: str, row_id: str) -> str:
    """The service host whose team-service replica drives a team or workflow (team/replicas.py)."""
    replica = d.postgres.psql(f"SELECT replica FROM {table} WHERE id = '{row_id}'", dbname="multihost_team")
    return replica.strip().rsplit("-", 1)[-1]  # the instance id is team-<host>


async def godel_topics(bootstrap: str) -> dict[str, tuple[set[int], str]]:
    """Godel's topics: the replica counts of their partitions, and their min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith("godel.")]
        metadata = await admin.describe_topics(names)
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in names])
    finally:
        await admin.close()
    isr = {r[3]: {e[0]: e[1] for e in r[4]}["min.insync.replicas"] for d in described for r in d.resources}
    return {t["topic"]: ({len(p["replicas"]) for p in t["partitions"]}, isr[t["topic"]]) for t in metadata}


def stored_events(d: Deployment) -> tuple[int, int, int, int]:
    """(rows, distinct ids, lowest sequence, highest sequence) of the event store."""
    row = d.postgres.psql(
        "SELECT count(*), count(DISTINCT id), coalesce(min(sequence_number), 0), coalesce(max(sequence_number), 0) "
        "FROM events",
        dbname="multihost_event",
    ).strip()
    rows, ids, low, high = (int(x) for x in row.split("|"))
    return rows, ids, low, high


def spawn_events(d: Deployment) -> dict[str, int]:
    """agent id -> how many agent:spawn events the store holds for it."""
    out = d.postgres.psql(
        "SELECT agent_id, count(*) FROM events WHERE event_type = 'agent:spawn' GROUP BY agent_id",
        dbname="multihost_event",
    )
    return {agent: int(n) for agent, n in (line.split("|") for line in out.splitlines() if line)}


def test_a_service_host_and_a_broker_die_under_load(deployment: Deployment) -> None:
    d = deployment
    name = f"multi-host-{uuid.uuid4().hex[:6]}"
    gate = Gate(d.work / "srv" / "workspace" / "repo")
    with d.http() as http:
        # A team and a workflow whose agents wait for the gate: they run across the kill.
        team = ok(
            http.post(
                "/api/v1/teams",
                json={
                    "name": name,
                    "task": "survive",
                    "config": {"size": 2, "command": echo_command(f"{gate.wait}; echo done $1")},
                },
            )
        )
        start_team(http, team["id"])
        definition = gated_workflow(name, gate.wait)
        workflow = ok(
            http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition), "start": True})
        )
        poll(
            lambda: steps(http, workflow["id"]).get("s2", {}),
            lambda s: s.get("status") == "STEP_STATUS_RUNNING",
            90,
            "workflow step s2 to run",
            interval=0.3,
        )
        # The host that dies is the one driving the workflow: the other must take it over.
        dead = driver(d, "workflows", workflow["id"])
        assert dead in SERVICE_HOSTS, dead
        topics = asyncio.run(godel_topics(d.brokers[KAFKA_HOSTS[0]].bootstrap))
        assert topics and all(t == ({3}, "2") for t in topics.values()), topics
        load = Load(d, LOAD_LIMIT).start()
        try:
            wait_for(lambda: len(load.acked) >= 10, 90, "ten acknowledged creates before the kill")
            killed_at = time.monotonic()
            for proc in d.processes[dead]:
                proc.kill9()
            d.brokers[DEAD_BROKER].kill9()
            d.lose_disks(dead)
            wait_for(lambda: answers(http), 60, "the mesh to answer through the gateway", interval=0.2)
            answered = time.monotonic() - killed_at
            wait_for(lambda: load.acked_after(killed_at) >= 5, 60, "creates acknowledged after the kill")
            first_ack = min(at for at, _ in load.acked if at > killed_at) - killed_at
        finally:
            load.stop()
        print(
            f"\nmulti-host: answered {answered:.1f}s after the kill, first create acknowledged after "
            f"{first_ack:.1f}s; {len(load.acked)} creates acknowledged, {len(load.failed)} failed"
        )
        assert answered <= RECOVERY_SECONDS, f"the mesh answered only {answered:.1f}s after the kill"
        alive = next(h for h in SERVICE_HOSTS if h != dead)
        poll(
            lambda: driver(d, "workflows", workflow["id"]),
            lambda h: h == alive,
            60,
            f"{alive} to drive the workflow",
        )
        gate.open()
        ended = wait_team(http, team["id"], 180)
        members = ok(http.get(f"/api/v1/teams/{team['id']}/agents"))
        assert ended["status"] == "TEAM_STATUS_COMPLETED", (ended, members)
        ended = wait_workflow(http, workflow["id"], 180)
        assert ended["status"] == "WORKFLOW_STATUS_COMPLETED", {
            step: {k: v for k, v in found.items() if k not in ("workflowId", "name", "definition")}
            for step, found in steps(http, workflow["id"]).items()
        }
        acked = [agent_id for _, agent_id in load.acked]
        missing = [a for a in acked if http.get(f"/api/v1/agents/{a}").status_code != 200]
        assert not missing, f"acknowledged creates lost: {missing}"
    # Every acknowledged agent's spawn event reaches the store, once; the sequence has no gap.
    spawned = poll(
        lambda: spawn_events(d),
        lambda found: all(a in found for a in acked),
        90,
        "the spawn event of every acknowledged agent in the store",
    )
    assert all(spawned[a] == 1 for a in acked), {a: spawned[a] for a in acked if spawned[a] != 1}
    rows, ids, low, high = stored_events(d)
    assert rows == ids, f"{rows - ids} events stored twice"
    assert (low, high) == (1, rows), f"sequence {low}..{high} for {rows} events: not gap-free"
