"""The team service's consumer of agent events (group `godel-team-service`): each event moves the
member it is about, feeds the task queue and the budgets, and the team or workflow that owns the
member decides what follows, all in one transaction per batch; the resulting agent calls are made
after the commit."""

from __future__ import annotations

from collections import OrderedDict

from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import agent_events_pb2, event_pb2
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.consumer import EventConsumer
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.events import event_data
from godel_server.runtime.ownership import Owner
from godel_server.runtime.row_locks import locked
from godel_server.runtime.topics import DOMAIN_TOPICS
from godel_server.team.budgets.ledger import BudgetLedger, Usage
from godel_server.team.members import Effects, Members, apply_agent_event, member_id_of, read_members
from godel_server.team.models import MemberRow, TeamRow
from godel_server.team.tasks.queue import TaskQueue
from godel_server.team.teams.orchestrator import TeamOrchestrator
from godel_server.team.workflows.engine import WorkflowEngine

# Agents remembered as outside every team and member (see AgentEventConsumer.wants); the oldest
# are forgotten first, and a forgotten agent's events are handled again (changing nothing).
OUTSIDE_REMEMBERED = 100_000


class AgentEventConsumer(EventConsumer):
    group_id = "godel-team-service"
    # A replica that died gives its partitions (and the decisions on its members' events) to the
    # others within seconds.
    kafka_options = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

    def __init__(
        self,
        db: Database,
        kafka: KafkaSettings,
        *,
        client_id: str,
        members: Members,
        teams: TeamOrchestrator,
        workflows: WorkflowEngine,
        tasks: TaskQueue,
        ledger: BudgetLedger,
        dead_letters: DeadLetterStore,
    ) -> None:
        super().__init__(db, kafka, [DOMAIN_TOPICS["agent"]], client_id=client_id, dead_letters=dead_letters)
        self._members = members
        self._teams = teams
        self._workflows = workflows
        self._tasks = tasks
        self._ledger = ledger
        self._effects = Effects()
        # Agents whose spawn this replica saw in no team and of no member (forgotten on restart).
        self._outside: OrderedDict[str, None] = OrderedDict()

    def wants(self, event: event_pb2.Event) -> bool:
        """Not an event of an agent in no team and of no member, but its usage (charged to its
        owner's budgets): the task queue follows the agents of teams, and members are agents this
        service created, whose spawn names them. Its spawn says so; its later events are skipped
        while this replica remembers that spawn and until one names a team. Each was a transaction
        that changed nothing."""
        data = event_data(event)
        agent_id = event.metadata.agent_id
        if isinstance(data, agent_events_pb2.AgentSpawned):
            inside = bool(data.agent.team_id or event.metadata.team_id or member_id_of(data.agent))
            if not inside and agent_id:
                self._outside[agent_id] = None
                if len(self._outside) > OUTSIDE_REMEMBERED:
                    self._outside.popitem(last=False)
            return inside
        if event.metadata.team_id:
            self._outside.pop(agent_id, None)  # it joined a team: followed from now on
            return True
        return isinstance(data, agent_events_pb2.AgentUsage) or agent_id not in self._outside

    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        # A failed batch is reprocessed from scratch: forget what the failed attempt decided.
        self._effects = effects = Effects()
        # The batch's team agents and members, each read in one statement, not one per event.
        await self._tasks.lock_agents(session, events)
        await self._workflows.read_steps(session, await read_members(session, events))
        for event in events:
            await self._tasks.on_agent_event(session, event)
            if isinstance(usage := event_data(event), agent_events_pb2.AgentUsage):
                await self._charge(session, usage, event, effects)
            change = await apply_agent_event(session, event)
            if change is not None:
                await self._route(session, change.member, change.ended, event, effects)
        return events

    async def _route(
        self,
        session: AsyncSession,
        member: MemberRow,
        ended: bool,
        event: event_pb2.Event | None,
        effects: Effects,
    ) -> None:
        """Hands a member's change to the workflow or team that owns it."""
        if member.workflow_id:
            await self._workflows.member_changed(session, member, ended, event, effects)
        elif member.team_id:
            await self._teams.member_changed(session, member, ended, event, effects)

    async def owner_changed(self, session: AsyncSession, member: MemberRow, effects: Effects) -> None:
        """A member that ended without an agent event (its agent could not be created)."""
        await self._route(session, member, True, None, effects)

    async def _charge(
        self,
        session: AsyncSession,
        spent: agent_events_pb2.AgentUsage,
        event: event_pb2.Event,
        effects: Effects,
    ) -> None:
        m = event.metadata
        usage = Usage(
            agent_id=spent.agent_id,
            team_id=spent.team_id,
            user_id=spent.user_id,
            cost=spent.cost,
            at=event.timestamp.ToDatetime(),
            owner=Owner(m.owner_user_id or None, m.owner_team_id or None),
        )
        if usage.team_id:
            # Team before budgets, the order every other writer locks them in.
            await locked(session, TeamRow, usage.team_id)
        for budget in await self._ledger.apply_usage(session, usage):
            if budget.entity_type == "team":
                reason = f"team budget exceeded: ${budget.used_budget:.4f} of ${budget.total_budget:.4f}"
                await self._teams.budget_exceeded(session, budget.entity_id, reason, effects)

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        self._members.apply(self._effects)
        self._effects = Effects()
