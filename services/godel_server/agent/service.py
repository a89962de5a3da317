"""The agent-service deployable: AgentService for clients, WorkerService for workers, and the
run coordinator that schedules runs and supervises them."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc, worker_service_pb2, worker_service_pb2_grpc
from godel_server.agent.dispatch import RunRequestConsumer
from godel_server.agent.logstore import LogStore
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.servicer import AgentServicer
from godel_server.agent.state import AgentStateStore
from godel_server.agent.worker_servicer import WorkerServicer
from godel_server.agent.workers import WorkerRegistry
from godel_server.runtime.host import Service, ServiceHost


class AgentService(Service):
    role = "agent"
    grpc_services = (
        agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
        worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    )
    migrations = Path(__file__).parent / "migrations"

    def __init__(self) -> None:
        self._coordinator: RunCoordinator | None = None
        self._logs: LogStore | None = None
        self._consumer: RunRequestConsumer | None = None

    def register(self, host: ServiceHost) -> None:
        s = host.settings
        store = AgentStateStore(host.db, host.publisher, s.instance_id)
        self._logs = LogStore(host.db)
        registry = WorkerRegistry()
        self._coordinator = RunCoordinator(s, store, self._logs, registry)
        self._consumer = RunRequestConsumer(
            host.db, s.kafka_bootstrap, self._coordinator, client_id=s.instance_id
        )
        servicer = AgentServicer(
            store,
            self._coordinator,
            self._logs,
            default_model=s.default_model,
            default_repo=s.default_repo,
            event_addr=s.service_addrs["event"],
        )
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(servicer, host.server)
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerServicer(self._coordinator, registry), host.server
        )

    async def start(self, host: ServiceHost) -> None:
        assert self._coordinator and self._logs and self._consumer
        self._logs.start()
        await self._coordinator.start()
        self._consumer.start()

    async def stop(self, host: ServiceHost) -> None:
        if self._consumer:
            await self._consumer.stop()
        if self._coordinator:
            await self._coordinator.stop()
        if self._logs:
            await self._logs.stop()
