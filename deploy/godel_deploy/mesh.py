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
from godel_deploy.gateway import render_envoy_config
from godel_deploy.paths import repo_root
from godel_deploy.ports import free_port
from godel_deploy.process import ManagedProcess

ROLES = ("cluster", "event", "agent", "team")
LOOPBACK = "127.0.0.1"
# Name of the API key (role operator) the team service drives agents with.
TEAM_SERVICE_KEY = "team-service"


@dataclass(frozen=True)
class MeshPorts:
    gateway: int = 7373
    gateway_admin: int = 7374
    grpc: dict[str, int] = field(
        default_factory=lambda: {"agent": 50051, "team": 50052, "event": 50053, "cluster": 50054}
    )
    admin: dict[str, int] = field(
        default_factory=lambda: {"agent": 9101, "team": 9102, "event": 9103, "cluster": 9104}
    )
    # The event service's WebSocket endpoint (/events, spec §3.2), also routed by the gateway.
    event_ws: int = 9113

    @classmethod
    def free(cls) -> MeshPorts:
        return cls(
            gateway=free_port(),
            gateway_admin=free_port(),
            grpc={r: free_port() for r in ROLES},
            admin={r: free_port() for r in ROLES},
            event_ws=free_port(),
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
    ) -> None:
        self.home = home.resolve()
        self.default_repo = (default_repo or self.home / "repo").resolve()
        self.worker_count = workers
        self.worker_capacity = worker_capacity
        self.workers: dict[str, ManagedProcess] = {}
        # Extra agent-service replicas: name -> (grpc port, admin port).
        self.agent_replicas: dict[str, tuple[int, int]] = {}
        self.kafka_bootstrap = kafka_bootstrap
        self.ports = ports or MeshPorts()
        self.database_url = database_url
        self.database_prefix = database_prefix
        self.extra_env = dict(extra_env or {})
        self.logs = self.home / "logs"
        self.services: dict[str, ManagedProcess] = {}
        self.gateway: EnvoyProxy | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def gateway_address(self) -> str:
        return f"{LOOPBACK}:{self.ports.gateway}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_address}"

    @property
    def events_ws_url(self) -> str:
        """The WebSocket endpoint of spec §3.2 through the gateway (add `?token=<API key>`)."""
        return f"ws://{self.gateway_address}/events"

    def address(self, role: str) -> str:
        return f"{LOOPBACK}:{self.ports.grpc[role]}"

    def env(self, role: str) -> dict[str, str]:
        """The environment a service process runs with (see godel_server.runtime.config)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
        env.update(
            {
                "GODEL_HOME": str(self.home),
                "GODEL_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "GODEL_OPENAPI_PATH": str(repo_root() / "gen" / "openapi" / "godel.swagger.json"),
                "GODEL_INSTANCE_ID": f"{role}-{self.ports.grpc[role]}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for r in ROLES:
            env[f"GODEL_{r.upper()}_PORT"] = str(self.ports.grpc[r])
            env[f"GODEL_{r.upper()}_ADMIN_PORT"] = str(self.ports.admin[r])
        env["GODEL_EVENT_WS_PORT"] = str(self.ports.event_ws)
        env["GODEL_DEFAULT_REPO"] = str(self.default_repo)
        if role == "team":
            # The team service drives agents through AgentService with its own key (read lazily:
            # the key is created once the cluster service has migrated its database).
            env["GODEL_API_KEY_FILE"] = str(self.key_path(TEAM_SERVICE_KEY))
        if self.database_url:
            env["GODEL_DATABASE_URL"] = self.database_url
            env["GODEL_DATABASE_NAME_PREFIX"] = self.database_prefix
        env.update(self.extra_env)
        return env

    # -- services ------------------------------------------------------------------------------

    def service_process(self, role: str) -> ManagedProcess:
        proc = self.services.get(role)
        if proc is None:
            proc = ManagedProcess(
                [sys.executable, "-m", "godel_server", role],
                self.logs / f"{role}-service.log",
                env=self.env(role),
                cwd=repo_root(),
                name=f"{role}-service",
            )
            self.services[role] = proc
        return proc

    def start_service(self, role: str) -> ManagedProcess:
        return self.service_process(role).start()

    def wait_service(self, role: str, timeout: float = 90.0) -> float:
        addr = self.address(role)
        return self.service_process(role).wait_for(
            lambda: grpc_serving(addr), timeout, f"{role}-service to serve on {addr}", interval=0.2
        )

    def stop_service(self, role: str) -> None:
        if role in self.services:
            self.services[role].stop(timeout=15)

    def kill_service(self, role: str) -> None:
        if role in self.services:
            self.services[role].kill9()

    def create_api_key(self, name: str, role: str, *, if_none: bool = False) -> str | None:
        """Creates an API key directly in the cluster database (`godel-server keys create`) and
        returns its secret; with `if_none`, returns None when an active key of that role exists."""
        argv = [sys.executable, "-m", "godel_server", "keys", "create", "--name", name, "--role", role]
        result = subprocess.run(
            [*argv, "--if-none"] if if_none else argv,
            env=self.env("cluster"),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 3 and if_none:
            return None
        if result.returncode != 0:
            raise RuntimeError(f"creating a {role} API key failed:\n{result.stderr}")
        return result.stdout.strip()

    # -- agent replicas and workers -----------------------------------------------------------

    def start_agent_replica(self, name: str) -> ManagedProcess:
        """Another agent-service process on its own ports, sharing the agent database and Kafka group."""
        grpc_port, admin_port = self.agent_replicas.setdefault(name, (free_port(), free_port()))
        env = self.env("agent")
        env.update(
            GODEL_AGENT_PORT=str(grpc_port),
            GODEL_AGENT_ADMIN_PORT=str(admin_port),
            GODEL_INSTANCE_ID=f"{name}-{grpc_port}",
        )
        proc = self.services.get(name)
        if proc is None:
            proc = ManagedProcess(
                [sys.executable, "-m", "godel_server", "agent"],
                self.logs / f"{name}.log",
                env=env,
                cwd=repo_root(),
                name=name,
            )
            self.services[name] = proc
        proc.start()
        addr = f"{LOOPBACK}:{grpc_port}"
        proc.wait_for(lambda: grpc_serving(addr), 90.0, f"{name} to serve on {addr}", interval=0.2)
        return proc

    def agent_addresses(self) -> list[str]:
        return [self.address("agent"), *(f"{LOOPBACK}:{g}" for g, _ in self.agent_replicas.values())]

    def key_path(self, name: str) -> Path:
        return self.home / f"{name}.key"

    def service_key(self, name: str, role: str) -> str:
        """An API key for one of the mesh's own processes, kept in <home>/<name>.key (mode 600)."""
        path = self.key_path(name)
        if path.exists():
            return path.read_text().strip()
        secret = self.create_api_key(name, role)
        assert secret
        path.write_text(secret + "\n")
        path.chmod(0o600)
        return secret

    def ensure_service_keys(self) -> None:
        """Keys of the services that call other services (once the cluster database is migrated)."""
        self.service_key(TEAM_SERVICE_KEY, "operator")

    def worker_key(self) -> str:
        """The API key workers connect with (role `worker`)."""
        return self.service_key("worker", "worker")

    def start_worker(self, name: str, *, capacity: int | None = None) -> ManagedProcess:
        """A `godel-server worker` process connected to every agent-service replica."""
        env = self.env("agent")
        env.pop("GODEL_INSTANCE_ID", None)
        env.update(
            GODEL_WORKER_CONNECT=",".join(self.agent_addresses()),
            GODEL_WORKER_CAPACITY=str(capacity or self.worker_capacity),
            GODEL_API_KEY=self.worker_key(),
        )
        proc = self.workers.get(name)
        if proc is None:
            proc = ManagedProcess(
                [sys.executable, "-m", "godel_server", "worker"],
                self.logs / f"{name}.log",
                env=env,
                cwd=repo_root(),
                name=name,
            )
            self.workers[name] = proc
        return proc.start()

    def stop_workers(self) -> None:
        for proc in self.workers.values():
            proc.stop(timeout=15)

    # -- gateway ---------------------------------------------------------------------------------

    def start_gateway(self) -> EnvoyProxy:
        config = render_envoy_config(
            out_path=self.home / "envoy.yaml",
            listen_port=self.ports.gateway,
            admin_port=self.ports.gateway_admin,
            agent_port=self.ports.grpc["agent"],
            team_port=self.ports.grpc["team"],
            event_port=self.ports.grpc["event"],
            event_ws_port=self.ports.event_ws,
            cluster_port=self.ports.grpc["cluster"],
            descriptor=repo_root() / "gateway" / "godel.pb",
            access_log=self.logs / "gateway-access.log",
        )
        self.gateway = EnvoyProxy(config, self.ports.gateway_admin, log_path=self.logs / "gateway.log")
        self.gateway.start()
        self.gateway.wait_ready()
        return self.gateway

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
        for name in self.agent_replicas:
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


def grpc_serving(addr: str, service: str = "", timeout: float = 1.0) -> bool:
    """True when a gRPC server at `addr` reports SERVING for `service` (grpc.health.v1)."""
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
