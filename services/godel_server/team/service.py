"""The team-service deployable: teams, workflows, tasks, budgets and intent. It drives agents only
through AgentService (gRPC) and learns what they do from the agent events on Kafka. It runs as
several replicas that share the teams and workflows (team/replicas.py)."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import (
    budget_service_pb2_grpc,
    intent_service_pb2_grpc,
    task_service_pb2_grpc,
    team_service_pb2_grpc,
    workflow_service_pb2_grpc,
)
from godel_server.runtime.db_gauges import GaugeSpec
from godel_server.runtime.host import Service, ServiceHost
from godel_server.team.agents import AgentGateway
from godel_server.team.budgets.ledger import BudgetLedger
from godel_server.team.budgets.servicer import BudgetServicer
from godel_server.team.dispatch import AgentEventConsumer
from godel_server.team.intent.servicer import IntentServicer
from godel_server.team.members import Members
from godel_server.team.metrics import GAUGES
from godel_server.team.models import MemberRow, TeamRow, WorkflowRow
from godel_server.team.replicas import Driven, Replicas
from godel_server.team.tasks.queue import TaskQueue
from godel_server.team.tasks.servicer import TaskServicer
from godel_server.team.teams.orchestrator import TeamOrchestrator
from godel_server.team.teams.servicer import TeamServicer
from godel_server.team.teams.strategies import RUNNING
from godel_server.team.workflows.engine import WorkflowEngine
from godel_server.team.workflows.scheduler import UNDERWAY
from godel_server.team.workflows.servicer import WorkflowServicer
from godel_server.team.workflows.store import WorkflowStore


class TeamService(Service):
    role = "team"
    migrations = Path(__file__).parent / "migrations"

    def __init__(self) -> None:
        self._members: Members | None = None
        self._workflows: WorkflowEngine | None = None
        self._teams: TeamOrchestrator | None = None
        self._consumer: AgentEventConsumer | None = None
        self._replicas: Replicas | None = None

    def register(self, host: ServiceHost) -> None:
        s, db, publisher = host.settings, host.db, host.publisher
        gateway = AgentGateway(s)
        members = self._members = Members(db, gateway)
        ledger = BudgetLedger(publisher, s.instance_id)
        tasks = TaskQueue(publisher, s.instance_id)
        teams = self._teams = TeamOrchestrator(s, db, publisher, members, ledger)
        workflows = self._workflows = WorkflowEngine(s, db, publisher, members)
        self._consumer = AgentEventConsumer(
            db,
            s.kafka,
            client_id=s.instance_id,
            members=members,
            teams=teams,
            workflows=workflows,
            tasks=tasks,
            ledger=ledger,
            dead_letters=host.dead_letters,
        )
        members.on_refused = self._consumer.owner_changed
        replicas = self._replicas = Replicas(db, s)
        replicas.drive(Driven("team", TeamRow, RUNNING, MemberRow.team_id, teams.adopt))
        replicas.drive(Driven("workflow", WorkflowRow, UNDERWAY, MemberRow.workflow_id, workflows.adopt))
        server = host.server
        team_servicer = TeamServicer(teams, db)
        team_servicer.dead_letters = host.dead_letters
        team_service_pb2_grpc.add_TeamServiceServicer_to_server(team_servicer, server)
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(
            WorkflowServicer(WorkflowStore(db), workflows, gateway, db), server
        )
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(db, tasks), server)
        budget_service_pb2_grpc.add_BudgetServiceServicer_to_server(BudgetServicer(db, ledger), server)
        intent_service_pb2_grpc.add_IntentServiceServicer_to_server(
            IntentServicer(
                openai_base_url=s.openai_base_url,
                openai_api_key=s.openai_api_key or "",
                default_model=s.default_model,
            ),
            server,
        )

    def gauges(self) -> GaugeSpec:
        return GAUGES

    async def start(self, host: ServiceHost) -> None:
        assert self._replicas and self._consumer
        await self._replicas.start()
        self._consumer.start()

    async def stop(self, host: ServiceHost) -> None:
        if self._consumer:
            await self._consumer.stop()
        if self._workflows:
            await self._workflows.stop()
        if self._teams:
            await self._teams.stop()
        if self._members:
            await self._members.stop()
        if self._replicas:
            await self._replicas.stop()
