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

    @classmethod
    def free(cls) -> MeshPorts:
        return cls(
            gateway=free_port(),
            gateway_admin=free_port(),
            grpc={r: free_port() for r in ROLES},
            admin={r: free_port() for r in ROLES},
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
    ) -> None:
        self.home = home.resolve()
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

    # -- gateway ---------------------------------------------------------------------------------

    def start_gateway(self) -> EnvoyProxy:
        config = render_envoy_config(
            out_path=self.home / "envoy.yaml",
            listen_port=self.ports.gateway,
            admin_port=self.ports.gateway_admin,
            agent_port=self.ports.grpc["agent"],
            team_port=self.ports.grpc["team"],
            event_port=self.ports.grpc["event"],
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
        self.start_gateway()
        if progress:
            print(f"  gateway        serving on {self.gateway_address}")

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for role in reversed(ROLES):
            self.stop_service(role)

    def processes(self) -> dict[str, ManagedProcess]:
        procs = dict(self.services)
        if self.gateway is not None:
            procs["gateway"] = self.gateway.process
        return procs


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
