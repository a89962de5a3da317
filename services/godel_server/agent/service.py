"""The agent-service deployable."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc
from godel_server.agent.servicer import AgentServicer
from godel_server.runtime.host import Service, ServiceHost


class AgentService(Service):
    role = "agent"
    grpc_services = (agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,)
    migrations = Path(__file__).parent / "migrations"

    def register(self, host: ServiceHost) -> None:
        s = host.settings
        # RPCs not implemented yet fall through to the generated base (UNIMPLEMENTED).
        servicer = AgentServicer(  # type: ignore[abstract]
            host.db,
            host.publisher,
            default_model=s.default_model,
            default_repo=s.default_repo,
            instance=s.instance_id,
        )
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(servicer, host.server)
