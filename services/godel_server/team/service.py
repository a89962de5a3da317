"""The team-service deployable: teams, workflows and tasks. The orchestration itself lands with the
orchestration work; until then every RPC answers UNIMPLEMENTED with a clear message."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import (
    task_service_pb2,
    task_service_pb2_grpc,
    team_service_pb2,
    team_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from godel_server.runtime.host import Service, ServiceHost


class TeamService(Service):
    role = "team"
    grpc_services = (
        team_service_pb2.DESCRIPTOR.services_by_name["TeamService"].full_name,
        workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
        task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    )
    migrations = Path(__file__).parent / "migrations"

    def register(self, host: ServiceHost) -> None:
        # The generated base servicers answer every RPC with UNIMPLEMENTED (mapped to a clear
        # message by the interceptor); mypy-protobuf marks their methods abstract.
        teams = team_service_pb2_grpc.TeamServiceServicer()  # type: ignore[abstract]
        workflows = workflow_service_pb2_grpc.WorkflowServiceServicer()  # type: ignore[abstract]
        tasks = task_service_pb2_grpc.TaskServiceServicer()  # type: ignore[abstract]
        team_service_pb2_grpc.add_TeamServiceServicer_to_server(teams, host.server)
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(workflows, host.server)
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(tasks, host.server)
