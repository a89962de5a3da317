"""A fake Godel mesh for client and CLI tests: every public service the client calls, on the
generated servicer base classes, in one in-process gRPC server on a free loopback port.

    with serve() as (mesh, address):
        mesh.add_agent("fix the flaky test")
        ...  # GodelClient(address, api_key=API_KEY) or `godel --addr address ...`
        assert mesh.requests_of(agent_service_pb2.ListAgentsRequest)

The fakes check the ``x-api-key`` metadata, page every listing two items at a time, and fail with
the statuses the real services' error interceptor makes. Domain logic is the real one (the agent
state machine, the event filter, the intent parser, the workflow definition parser); methods the
client does not call answer UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from godel.v1 import (
    agent_service_pb2_grpc,
    auth_service_pb2_grpc,
    budget_service_pb2_grpc,
    cluster_service_pb2_grpc,
    event_service_pb2_grpc,
    intent_service_pb2_grpc,
    system_service_pb2_grpc,
    task_service_pb2_grpc,
    team_service_pb2_grpc,
    workflow_service_pb2_grpc,
)
from tests.fakes.mesh.agents import FakeAgents, FakeAuth, FakeClusters, FakeEvents, FakeSystem
from tests.fakes.mesh.orchestration import FakeBudgets, FakeIntents, FakeTasks, FakeTeams, FakeWorkflows
from tests.fakes.mesh.state import API_KEY, T0, FakeMesh, moved, ts

__all__ = ["API_KEY", "T0", "FakeMesh", "moved", "serve", "ts"]


@contextmanager
def serve(
    mesh: FakeMesh | None = None, credentials: grpc.ServerCredentials | None = None
) -> Iterator[tuple[FakeMesh, str]]:
    """The fake services of ``mesh`` (a new one when None) on 127.0.0.1:<free port>, stopped on exit;
    over TLS with ``credentials`` (``grpc.ssl_server_credentials(...)``)."""
    state = mesh or FakeMesh()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(FakeAgents(state), server)  # type: ignore[abstract]
    event_service_pb2_grpc.add_EventServiceServicer_to_server(FakeEvents(state), server)  # type: ignore[abstract]
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(FakeSystem(), server)  # type: ignore[abstract]
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(state), server)  # type: ignore[abstract]
    cluster_service_pb2_grpc.add_ClusterServiceServicer_to_server(FakeClusters(state), server)  # type: ignore[abstract]
    team_service_pb2_grpc.add_TeamServiceServicer_to_server(FakeTeams(state), server)  # type: ignore[abstract]
    workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(FakeWorkflows(state), server)  # type: ignore[abstract]
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(FakeTasks(state), server)
    budget_service_pb2_grpc.add_BudgetServiceServicer_to_server(FakeBudgets(state), server)
    intent_service_pb2_grpc.add_IntentServiceServicer_to_server(FakeIntents(state), server)  # type: ignore[abstract]
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield state, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
