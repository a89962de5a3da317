"""The Godel mesh as local processes: the four services and the Envoy gateway, wired to a Kafka
broker and (optionally) a PostgreSQL server. Used by `make up` and by the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from godel_deploy.envoy import EnvoyProxy
from godel_deploy.gateway_launcher import render as render_gateway
from godel_deploy.gateway_overlay import load_gateway_settings
from godel_deploy.keys import KeyFiles, Selected, database_identity, key_problem
from godel_deploy.ports import free_ports, retry_on_port_taken
from godel_deploy.process import ManagedProcess
from godel_server.runtime.config import TlsSettings, load_settings, load_tls
from godel_server.runtime.tls import open_sync_channel
from godel_server.runtime.topology import (
    EVENT_WS_PORT,
    GATEWAY_ADMIN_PORT,
    GATEWAY_PORT,
    PROCESSES,
    START_ORDER,
)
from godel_server.worker.procs import kill_leftovers

ROLES = START_ORDER
LOOPBACK = "127.0.0.1"
# Name of the API key (role service) the team service drives agents with.
TEAM_SERVICE_KEY = "team-service"
# Name of the API key (role autonomic) the cluster service's autonomic loop acts with (restart
# agents, scale teams).
CLUSTER_SERVICE_KEY = "cluster-service"
# Name of the API key (role operator) the agent service asks the cluster registry with (federation).
AGENT_SERVICE_KEY = "agent-service"
# Name of the API key (role worker) workers connect with.
WORKER_KEY = "worker"
# Every key a process of the mesh uses, by name, with its role.
SERVICE_KEYS = {
    TEAM_SERVICE_KEY: "service",
    CLUSTER_SERVICE_KEY: "autonomic",
    AGENT_SERVICE_KEY: "operator",
    WORKER_KEY: "worker",
}
# Settings `make up` takes from its caller's environment (the others it sets itself): what makes
# the installation a member of a federation, and its topic prefix on a shared Kafka broker.
PASSED_THROUGH = ("GODEL_CLUSTER_", "GODEL_FEDERATION_", "GODEL_KAFKA_TOPIC_PREFIX")
# The service key each role presents to other services (read lazily: it is created once the cluster
# service has migrated its database): the team service drives agents, the cluster service's
# autonomic loop agents and teams, the agent service asks the cluster registry.
ROLE_KEYS = {"team": TEAM_SERVICE_KEY, "cluster": CLUSTER_SERVICE_KEY, "agent": AGENT_SERVICE_KEY}
# The password of the first (admin) user, saved per database like the keys.
ADMIN_PASSWORD = "admin-password"


@dataclass(frozen=True)
class SavedKey:
    """A key the launcher saved for this mesh's database, and how it got there."""

    name: str
    secret: str = field(repr=False)
    path: Path
    selected: Selected
    # A new key was made: there was none for this database, or the saved one was refused.
    created: bool = False
    # Why the cluster service refused the saved key (None: it accepted it, or there was none).
    problem: str | None = None
    # Where a refused key of unknown database was moved (it may belong to another database).
    set_aside: Path | None = None


@dataclass(frozen=True)
class MeshPorts:
    """The ports of one installation; the defaults are those of runtime/topology.py."""

    gateway: int = GATEWAY_PORT
    gateway_admin: int = GATEWAY_ADMIN_PORT
    grpc: dict[str, int] = field(default_factory=lambda: {r: p.grpc_port for r, p in PROCESSES.items()})
    admin: dict[str, int] = field(default_factory=lambda: {r: p.admin_port for r, p in PROCESSES.items()})
    # The event service's WebSocket endpoint (/events, spec §3.2), also routed by the gateway.
    event_ws: int = EVENT_WS_PORT

    @classmethod
    def free(cls) -> MeshPorts:
        """Distinct ports free right now; a start that finds one taken is retried with
        `godel_deploy.ports.retry_on_port_taken` on a new set."""
        ports = free_ports(3 + 2 * len(ROLES))
        return cls(
            gateway=ports.pop(),
            gateway_admin=ports.pop(),
            grpc={r: ports.pop() for r in ROLES},
            admin={r: ports.pop() for r in ROLES},
            event_ws=ports.pop(),
        )


class Mesh:
    """Starts, health-checks and stops the services and the gateway of one Godel installation."""

    def __init__(
        self,
        home: Path,
        kafka_bootstrap: str,
        *,
        ports: MeshPorts | None = None,
        database_url: str | None = None,
        database_prefix: str = "godel",
        extra_env: dict[str, str] | None = None,
        default_repo: Path | None = None,
        workers: int = 1,
        worker_capacity: int = 16,
        worktree_root: Path | None = None,
    ) -> None:
        self.home = home.resolve()
        self.default_repo = (default_repo or self.home / "repo").resolve()
        # Agents' worktrees live beside the home (keys, databases), not in it: no `../..` from a
        # worktree names a key, and the sandbox shows an agent its worktree alone anyway.
        self.worktree_root = (worktree_root or self.home.with_name(f"{self.home.name}-worktrees")).resolve()
        self.worker_count = workers
        self.worker_capacity = worker_capacity
        self.workers: dict[str, ManagedProcess] = {}
        # Extra replicas of the services: name -> (role, grpc port, admin port).
        self.replicas: dict[str, tuple[str, int, int]] = {}
        self.kafka_bootstrap = kafka_bootstrap
        self.ports = ports or MeshPorts()
        self.database_url = database_url
        self.database_prefix = database_prefix
        self.extra_env = dict(extra_env or {})
        # Mutual TLS between the processes when extra_env names GODEL_TLS_* (the probes use it too).
        self.tls = load_tls(self.extra_env)
        self.logs = self.home / "logs"
        self.services: dict[str, ManagedProcess] = {}
        self.gateway: EnvoyProxy | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def gateway_address(self) -> str:
        return f"{LOOPBACK}:{self.ports.gateway}"

    @property
    def gateway_url(self) -> str:
        scheme = "https" if self.extra_env.get("GODEL_GATEWAY_TLS_CERT_FILE") else "http"
        return f"{scheme}://{self.gateway_address}"

    @property
    def events_ws_url(self) -> str:
        """The WebSocket endpoint of spec §3.2 through the gateway (the credential goes in a header or
        the `bearer.<credential>` subprotocol)."""
        return f"ws://{self.gateway_address}/events"

    def address(self, role: str) -> str:
        return f"{LOOPBACK}:{self.ports.grpc[role]}"

    def env(self, role: str) -> dict[str, str]:
        """The environment a service process runs with (see godel_server.runtime.config)."""
        env = self._settings_env(role)
        if role in ROLE_KEYS:
            env["GODEL_API_KEY_FILE"] = str(self.key_path(ROLE_KEYS[role]))
        env.update(self.extra_env)
        return env

    def _settings_env(self, role: str) -> dict[str, str]:
        """The environment of a role without its key file (which depends on the database)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
        env.update(
            {
                "GODEL_HOME": str(self.home),
                "GODEL_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "GODEL_INSTANCE_ID": f"{role}-{self.ports.grpc[role]}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for r in ROLES:
            env[f"GODEL_{r.upper()}_PORT"] = str(self.ports.grpc[r])
            env[f"GODEL_{r.upper()}_ADMIN_PORT"] = str(self.ports.admin[r])
        env["GODEL_EVENT_WS_PORT"] = str(self.ports.event_ws)
        env["GODEL_DEFAULT_REPO"] = str(self.default_repo)
        # Where federation peers reach this cluster (used once GODEL_CLUSTER_NAME makes it a member).
        env["GODEL_CLUSTER_ENDPOINT"] = self.gateway_address
        if self.database_url:
            env["GODEL_DATABASE_URL"] = self.database_url
            env["GODEL_DATABASE_NAME_PREFIX"] = self.database_prefix
        return env

    # -- services ------------------------------------------------------------------------------

    def service_process(self, role: str) -> ManagedProcess:
        proc = self.services.get(role)
        if proc is None:
            proc = ManagedProcess(
                [sys.executable, "-m", "godel_server", role],
                self.logs / f"{role}-service.log",
                env=self.env(role),
                cwd=self.home,
                name=f"{role}-service",
            )
            self.services[role] = proc
        return proc

    def start_service(self, role: str) -> ManagedProcess:
        return self.service_process(role).start()

    def wait_service(self, role: str, timeout: float = 90.0) -> float:
        addr = self.address(role)
        return self.service_process(role).wait_for(
            lambda: grpc_serving(addr, tls=self.tls),
            timeout,
            f"{role}-service to serve on {addr}",
            interval=0.2,
        )

    def stop_service(self, role: str) -> None:
        if role in self.services:
            self.services[role].stop(timeout=15)

    def kill_service(self, role: str) -> None:
        if role in self.services:
            self.services[role].kill9()

    def create_api_key(
        self, name: str, role: str, *, if_none: bool = False, user: str | None = None
    ) -> str | None:
        """Creates an API key directly in the cluster database (`godel-server keys create`) and
        returns its secret; with `if_none`, returns None when an active key of that role exists.
        With `user` (a username) the key belongs to that user, else it is a service key."""
        argv = [sys.executable, "-m", "godel_server", "keys", "create", "--name", name, "--role", role]
        if user:
            argv += ["--user", user]
        return self._cluster_cli([*argv, "--if-none"] if if_none else argv, f"creating a {role} API key")

    def create_user(self, username: str, role: str, *, if_none: bool = False) -> str | None:
        """Creates a user directly in the cluster database (`godel-server users create`) and
        returns the generated password; with `if_none`, None when the user exists."""
        argv = [
            sys.executable,
            "-m",
            "godel_server",
            "users",
            "create",
            "--username",
            username,
            "--role",
            role,
        ]
        return self._cluster_cli([*argv, "--if-none"] if if_none else argv, f"creating user {username}")

    def _cluster_cli(self, argv: list[str], what: str) -> str | None:
        """Runs a `godel-server` command on the cluster database: its output, None for exit 3."""
        result = subprocess.run(argv, env=self.env("cluster"), capture_output=True, text=True, check=False)
        if result.returncode == 3 and "--if-none" in argv:
            return None
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed:\n{result.stderr}")
        return result.stdout.strip()

    # -- agent replicas and workers -----------------------------------------------------------

    def start_agent_replica(self, name: str) -> ManagedProcess:
        return self.start_replica("agent", name)

    def start_replica(self, role: str, name: str) -> ManagedProcess:
        """Another process of `role` on its own ports, sharing the role's database and Kafka groups.
        A restart keeps the replica's ports (workers and the gateway know them); a first start whose
        port was taken before the replica could bind it starts again on other free ports."""
        if name in self.replicas:
            return self._start_replica(name)

        def first_start(attempt: int) -> ManagedProcess:
            grpc_port, admin_port = free_ports(2)
            self.replicas[name] = (role, grpc_port, admin_port)
            self.services.pop(name, None)
            return self._start_replica(name)

        return retry_on_port_taken(first_start)

    def _start_replica(self, name: str) -> ManagedProcess:
        role, grpc_port, admin_port = self.replicas[name]
        env = self.env(role)
        env.update(
            {
                f"GODEL_{role.upper()}_PORT": str(grpc_port),
                f"GODEL_{role.upper()}_ADMIN_PORT": str(admin_port),
                "GODEL_INSTANCE_ID": f"{name}-{grpc_port}",
            }
        )
        if role == "event":
            env["GODEL_EVENT_WS_PORT"] = "0"  # the gateway routes the WebSocket to the first replica
        proc = self.services.get(name)
        if proc is None:
            proc = ManagedProcess(
                [sys.executable, "-m", "godel_server", role],
                self.logs / f"{name}.log",
                env=env,
                cwd=self.home,
                name=name,
            )
            self.services[name] = proc
        proc.start()
        addr = self.replica_address(name)
        proc.wait_for(
            lambda: grpc_serving(addr, tls=self.tls), 90.0, f"{name} to serve on {addr}", interval=0.2
        )
        return proc

    def replica_address(self, name: str) -> str:
        """The gRPC address of a process of the mesh: a role's first one, or a replica's."""
        if name in self.replicas:
            return f"{LOOPBACK}:{self.replicas[name][1]}"
        return self.address(name)

    def addresses(self, role: str) -> list[str]:
        """The gRPC addresses of every process of `role`."""
        extra = [self.replica_address(n) for n, (r, _, _) in self.replicas.items() if r == role]
        return [self.address(role), *extra]

    def agent_addresses(self) -> list[str]:
        return self.addresses("agent")

    def key_files(self) -> KeyFiles:
        """The saved keys of this mesh's database (see godel_deploy.keys)."""
        database = load_settings("cluster", {**self._settings_env("cluster"), **self.extra_env}).database_url
        return KeyFiles(self.home, database_identity(database))

    def key_path(self, name: str) -> Path:
        return self.key_files().path(name)

    def ensure_key(self, name: str, role: str, *, user: str | None = None) -> SavedKey:
        """The saved key `name` for this mesh's database, checked with the running cluster service:
        brought back from an earlier use of the database, created when there is none, replaced when
        the cluster service does not accept it (unknown, revoked, expired, wrong role). A key it
        creates belongs to `user` (a username) when given."""
        files = self.key_files()
        selected = files.select(name)
        secret, problem = selected.secret, None
        if secret is not None:
            problem = key_problem(self.address("cluster"), secret, role, tls=self.tls)
            if problem is None:
                if selected.unidentified:
                    files.save(name, secret, role)  # record its database from now on
                return SavedKey(name, secret, files.path(name), selected)
        set_aside = files.set_aside_unidentified(name) if selected.unidentified else None
        created = self.create_api_key(name, role, user=user)
        assert created
        path = files.save(name, created, role)
        return SavedKey(name, created, path, selected, created=True, problem=problem, set_aside=set_aside)

    def ensure_admin_user(self, username: str) -> tuple[Path, str | None]:
        """The first user, an admin, in this mesh's database: created with a generated password
        saved (per database, like the keys) as `<home>/admin-password.key`; returns that file and
        the password when it was just created (None: the user existed)."""
        files = self.key_files()
        files.select(ADMIN_PASSWORD)
        password = self.create_user(username, "admin", if_none=True)
        if password is not None:
            files.save(ADMIN_PASSWORD, password, "admin")
        return files.path(ADMIN_PASSWORD), password

    def ensure_service_keys(self) -> list[SavedKey]:
        """Keys of the mesh's own processes (once the cluster service serves); see ensure_key."""
        return [self.ensure_key(name, role) for name, role in SERVICE_KEYS.items()]

    def worker_key(self) -> str:
        """The API key workers connect with (role `worker`)."""
        return self.ensure_key(WORKER_KEY, SERVICE_KEYS[WORKER_KEY]).secret

    def worker_state_dir(self, name: str) -> Path:
        """The state directory of the worker called `name`: its identity and journal, so that a
        worker restarted under the same name is the same worker."""
        return self.home / "workers" / name

    def worker_id(self, name: str) -> str:
        """The identity of the worker called `name` (recorded once it has started)."""
        return (self.worker_state_dir(name) / "worker-id").read_text().strip()

    def start_worker(
        self,
        name: str,
        *,
        capacity: int | None = None,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        """A worker process connected to every agent-service replica: `godel-server worker`, or
        `argv` (a worker in another language, which reads the same GODEL_* settings), with `env`
        on top of the mesh's."""
        worker_env = self.env("agent")
        worker_env.pop("GODEL_INSTANCE_ID", None)
        worker_env.update(
            GODEL_WORKER_CONNECT=",".join(self.agent_addresses()),
            GODEL_WORKER_CAPACITY=str(capacity or self.worker_capacity),
            GODEL_API_KEY=self.worker_key(),
            GODEL_WORKTREE_ROOT=str(self.worktree_root),
            GODEL_WORKER_STATE_DIR=str(self.worker_state_dir(name)),
            **(env or {}),
        )
        proc = self.workers.get(name)
        if proc is None:
            proc = ManagedProcess(
                argv or [sys.executable, "-m", "godel_server", "worker"],
                self.logs / f"{name}.log",
                env=worker_env,
                cwd=self.home,
                name=name,
            )
            self.workers[name] = proc
        return proc.start()

    def stop_workers(self) -> None:
        for proc in self.workers.values():
            proc.stop(timeout=15)
        # A worker killed while bwrap set a sandbox up leaves that sandbox running for the next
        # worker on the root to kill; with no next worker, the mesh does it.
        kill_leftovers(self.worktree_root)

    # -- gateway ---------------------------------------------------------------------------------

    def start_gateway(self) -> EnvoyProxy:
        """Envoy configured as `godel-gateway` configures it: from the mesh's environment, with
        every replica of each service as an endpoint."""
        env = self.env("cluster")
        env.update(
            GODEL_GATEWAY_PORT=str(self.ports.gateway),
            GODEL_GATEWAY_ADMIN_PORT=str(self.ports.gateway_admin),
            GODEL_GATEWAY_ACCESS_LOG=str(self.logs / "gateway-access.log"),
        )
        for role in ROLES:
            env[f"GODEL_GATEWAY_{role.upper()}_ENDPOINTS"] = ",".join(self.addresses(role))
        config = render_gateway(load_gateway_settings(env), self.home / "envoy.yaml")
        self.gateway = EnvoyProxy(config, self.ports.gateway_admin, log_path=self.logs / "gateway.log")
        self.gateway.start()
        self.gateway.wait_ready()
        return self.gateway

    def restart_gateway(self) -> EnvoyProxy:
        """The gateway again, with the replicas started since (Envoy has no hot restart here)."""
        if self.gateway is not None:
            self.gateway.stop()
        return self.start_gateway()

    # -- whole mesh ------------------------------------------------------------------------------

    def start(self, roles: Iterable[str] = ROLES, *, progress: bool = False) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        ensure_repo(self.default_repo)
        roles = list(roles)
        for role in roles:
            self.start_service(role)
        for role in roles:
            started = time.monotonic()
            self.wait_service(role)
            if progress:
                print(
                    f"  {role}-service  serving on {self.address(role)}  ({time.monotonic() - started:.1f}s)"
                )
        if "cluster" in roles:
            self.ensure_service_keys()
        self.start_gateway()
        if progress:
            print(f"  gateway        serving on {self.gateway_address}")
        if "agent" in roles:
            for i in range(1, self.worker_count + 1):
                self.start_worker(f"worker-{i}")

    def stop(self) -> None:
        self.stop_workers()
        if self.gateway is not None:
            self.gateway.stop()
        for name in self.replicas:
            self.stop_service(name)
        for role in reversed(ROLES):
            self.stop_service(role)

    def processes(self) -> dict[str, ManagedProcess]:
        procs = {**self.services, **self.workers}
        if self.gateway is not None:
            procs["gateway"] = self.gateway.process
        return procs


def ensure_repo(path: Path) -> None:
    """A git repository with one commit at `path` (agents branch their worktrees from its HEAD)."""
    if (path / ".git").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(path), "-c", "user.name=Godel", "-c", "user.email=godel@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (path / "README.md").write_text("Workspace of Godel agents: each works on its own godel/<id> branch.\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Initial commit"], check=True)


def grpc_serving(
    addr: str, service: str = "", timeout: float = 1.0, *, tls: TlsSettings | None = None
) -> bool:
    """True when a gRPC server at `addr` reports SERVING for `service` (grpc.health.v1)."""
    with open_sync_channel(addr, tls or TlsSettings()) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
