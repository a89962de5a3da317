"""The agent-service deployable: AgentService for clients, WorkerService for workers, the run
coordinator that schedules runs and supervises them, and (when the cluster is federated) its
membership of the federation and the copying of its peers' events about the agents it placed there."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import agent_service_pb2_grpc, worker_service_pb2_grpc
from godel_server.agent.dispatch import RunRequestConsumer
from godel_server.agent.federation import Federation
from godel_server.agent.follower import PeerEventFollower
from godel_server.agent.logstore import LogStore
from godel_server.agent.member import FederationMember
from godel_server.agent.metrics import GAUGES
from godel_server.agent.references import References
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.servicer import AgentServicer
from godel_server.agent.state import AgentStateStore
from godel_server.agent.worker_servicer import WorkerServicer
from godel_server.agent.workers import WorkerRegistry
from godel_server.runtime.db_gauges import GaugeSpec
from godel_server.runtime.host import Service, ServiceHost


class AgentService(Service):
    role = "agent"
    migrations = Path(__file__).parent / "migrations"

    def __init__(self) -> None:
        self._coordinator: RunCoordinator | None = None
        self._logs: LogStore | None = None
        self._consumer: RunRequestConsumer | None = None
        self._federation: Federation | None = None
        self._references: References | None = None
        self._member: FederationMember | None = None
        self._follower: PeerEventFollower | None = None

    def register(self, host: ServiceHost) -> None:
        s = host.settings
        store = AgentStateStore(host.db, host.publisher, s.instance_id)
        self._logs = LogStore(host.db, s.agent_log_max_lines)
        registry = WorkerRegistry()
        self._coordinator = RunCoordinator(s, store, self._logs, registry)
        self._consumer = RunRequestConsumer(
            host.db, s.kafka, self._coordinator, client_id=s.instance_id, dead_letters=host.dead_letters
        )
        self._federation = Federation(s, store)
        if s.federation.enabled:
            self._member = FederationMember(host.db, self._federation, registry)
            self._follower = PeerEventFollower(host.db, host.publisher, self._federation, s.instance_id)
        self._references = References(host.db, s.service_addrs["team"], s.tls)
        servicer = AgentServicer(
            store,
            self._coordinator,
            self._logs,
            default_model=s.default_model,
            default_repo=s.default_repo,
            event_addr=s.service_addrs["event"],
            max_live_per_user=s.max_running_agents_per_user,
            tls=s.tls,
            federation=self._federation,
            references=self._references,
        )
        servicer.dead_letters = host.dead_letters
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(servicer, host.server)
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerServicer(self._coordinator, registry, s.worker_run_lease), host.server
        )

    def gauges(self) -> GaugeSpec:
        return GAUGES

    async def start(self, host: ServiceHost) -> None:
        assert self._coordinator and self._logs and self._consumer
        self._logs.start()
        await self._coordinator.start()
        self._consumer.start()
        for part in (self._member, self._follower):
            if part is not None:
                part.start()

    async def stop(self, host: ServiceHost) -> None:
        for part in (self._member, self._follower):
            if part is not None:
                await part.stop()
        if self._federation:
            await self._federation.close()
        if self._consumer:
            await self._consumer.stop()
        if self._coordinator:
            await self._coordinator.stop()
        if self._logs:
            await self._logs.stop()
        if self._references:
            await self._references.close()
