"""The shape of a Godel installation in one table: the service processes (roles), the godel.v1
gRPC services each one serves (named from the proto descriptors), and the ports everything
listens on by default. runtime/config.py takes its defaults from here, the launcher
(deploy/godel_deploy/mesh.py) its ports and start order, the gateway
(deploy/godel_deploy/gateway.py) its routes and upstream ports, and each deployable
(`Service.grpc_services`) the services it registers, health-checks and reflects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from google.protobuf.descriptor import FileDescriptor

from godel.v1 import (
    agent_service_pb2,
    alert_service_pb2,
    auth_service_pb2,
    autonomic_service_pb2,
    budget_service_pb2,
    cluster_service_pb2,
    event_service_pb2,
    intent_service_pb2,
    system_service_pb2,
    task_service_pb2,
    team_service_pb2,
    worker_service_pb2,
    workflow_service_pb2,
)

Role = Literal["agent", "team", "event", "cluster"]


def _services(*files: FileDescriptor) -> tuple[str, ...]:
    """The full names of the services the proto files declare (godel.v1.AgentService, ...)."""
    return tuple(service.full_name for file in files for service in file.services_by_name.values())


@dataclass(frozen=True)
class Process:
    """One service process (`godel-server <role>`)."""

    role: Role
    # Default gRPC port (GODEL_<ROLE>_PORT) and HTTP admin port with /metrics (GODEL_<ROLE>_ADMIN_PORT).
    grpc_port: int
    admin_port: int
    # The godel.v1 services it serves.
    services: tuple[str, ...]


PROCESSES: dict[Role, Process] = {
    p.role: p
    for p in (
        Process("agent", 50051, 9101, _services(agent_service_pb2.DESCRIPTOR, worker_service_pb2.DESCRIPTOR)),
        Process(
            "team",
            50052,
            9102,
            _services(
                team_service_pb2.DESCRIPTOR,
                workflow_service_pb2.DESCRIPTOR,
                task_service_pb2.DESCRIPTOR,
                budget_service_pb2.DESCRIPTOR,
                intent_service_pb2.DESCRIPTOR,
            ),
        ),
        Process("event", 50053, 9103, _services(event_service_pb2.DESCRIPTOR)),
        Process(
            "cluster",
            50054,
            9104,
            _services(
                cluster_service_pb2.DESCRIPTOR,
                auth_service_pb2.DESCRIPTOR,
                system_service_pb2.DESCRIPTOR,
                alert_service_pb2.DESCRIPTOR,
                autonomic_service_pb2.DESCRIPTOR,
            ),
        ),
    )
}
ROLES: tuple[Role, ...] = tuple(PROCESSES)
# The order an installation starts in: the cluster service first (it keeps the API keys the others
# check and present), then the event service, then the agent service that the team service drives.
START_ORDER: tuple[Role, ...] = ("cluster", "event", "agent", "team")

# The Envoy gateway: REST/JSON, SSE and gRPC for clients (GODEL_GATEWAY_PORT), and its admin port.
GATEWAY_PORT = 7373
GATEWAY_ADMIN_PORT = 7374
# The event service's WebSocket endpoint (/events, spec §3.2; GODEL_EVENT_WS_PORT), behind the gateway.
EVENT_WS_PORT = 9113
# The Kafka broker `make up` starts (GODEL_KAFKA_PORT) and the bootstrap address services default to.
KAFKA_PORT = 9092


def role_serving(service: str) -> Role:
    """The role whose process serves a godel.v1 service (KeyError for a service none serves)."""
    for process in PROCESSES.values():
        if service in process.services:
            return process.role
    raise KeyError(service)
