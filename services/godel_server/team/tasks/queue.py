"""The task queue (spec §3.1 Tasks): tasks wait per team in priority order and go to the team's idle
agents, which the queue learns about from the agent events on Kafka. A task whose agent ends before
finishing it goes back to the queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Exists, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import agent_events_pb2, event_pb2, task_events_pb2, task_pb2
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError
from godel_server.runtime.events import event_data, utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import EVERYTHING, NO_OWNER, Owner, Reach
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.row_locks import hold, lock_all, locked
from godel_server.runtime.statuses import AGENT_STATUS, AgentStatus, TaskStatus
from godel_server.team.events import service_event
from godel_server.team.models import TaskRow, TeamAgentRow
from godel_server.team.owners import same_request
from godel_server.team.tasks.mapping import PRIORITY, task_to_proto

NEWEST = Keyset((TaskRow.created_at, TaskRow.id), descending=True)
DEFAULT_PRIORITY: int = task_pb2.TASK_PRIORITY_MEDIUM

# Task statuses: held by an agent, and done.
HELD = (TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS)
FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# Agent statuses: an agent in a live status can take work; an ended one gives its task back.
LIVE_AGENT = (AgentStatus.PENDING, AgentStatus.INITIALIZING, AgentStatus.RUNNING, AgentStatus.PAUSED)
ENDED_AGENT = frozenset({AgentStatus.COMPLETED, AgentStatus.FAILED, AgentStatus.KILLED})

TaskEvent = (
    task_events_pb2.TaskCreated
    | task_events_pb2.TaskAssigned
    | task_events_pb2.TaskCompleted
    | task_events_pb2.TaskFailed
    | task_events_pb2.TaskRequeued
)


class TaskQueue:
    """Every method works in the caller's transaction; events go to the outbox with the change."""

    def __init__(self, publisher: EventPublisher, instance: str) -> None:
        self._publisher = publisher
        self._instance = instance

    # ---- tasks --------------------------------------------------------------------------------
    async def by_request_id(self, session: AsyncSession, request_id: str, owner: Owner) -> TaskRow | None:
        """The task a request of `owner` with this request_id created (request ids are per user)."""
        row: TaskRow | None = await session.scalar(
            select(TaskRow).where(same_request(TaskRow, request_id, owner))
        )
        return row

    async def create(
        self,
        session: AsyncSession,
        *,
        title: str,
        description: str = "",
        priority: int = DEFAULT_PRIORITY,
        team_id: str = "",
        metadata: Mapping[str, Any] | None = None,
        request_id: str = "",
        created_by: str = "",
        owner: Owner = NO_OWNER,
    ) -> TaskRow:
        """Queues a task and hands it to an idle agent of its team if there is one. A repeated
        request_id returns the task it created (a concurrent duplicate fails the flush with
        IntegrityError: the caller then reads it back with `by_request_id`)."""
        if request_id:
            existing = await self.by_request_id(session, request_id, owner)
            if existing is not None:
                return existing
        if priority not in PRIORITY.numbers:
            raise ValueError(f"unknown task priority {priority}")
        now = utcnow()
        row = TaskRow(
            id=new_id(),
            request_id=request_id or None,
            title=title,
            description=description or None,
            status=TaskStatus.PENDING,
            priority=priority,
            team_id=team_id or None,
            created_by=created_by or None,
            user_id=owner.user_id,
            user_team_id=owner.team_id,
            created_at=now,
            updated_at=now,
            meta=dict(metadata or {}),
        )
        session.add(row)
        await session.flush()
        await self._publish(session, task_events_pb2.TaskCreated, row)
        if row.team_id:
            await self._fill(session, row.team_id)
        return row

    async def get(self, session: AsyncSession, task_id: str) -> TaskRow:
        row = await session.get(TaskRow, task_id)
        if row is None:
            raise NotFoundError("task", task_id)
        return row

    async def list_page(
        self,
        session: AsyncSession,
        *,
        statuses: Sequence[TaskStatus] = (),
        team_id: str = "",
        agent_id: str = "",
        reach: Reach = EVERYTHING,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[Sequence[TaskRow], str]:
        stmt = select(TaskRow).where(reach.where(TaskRow.user_id, TaskRow.user_team_id))
        if statuses:
            stmt = stmt.where(TaskRow.status.in_(statuses))
        if team_id:
            stmt = stmt.where(TaskRow.team_id == team_id)
        if agent_id:
            stmt = stmt.where(TaskRow.agent_id == agent_id)
        rows: Sequence[TaskRow]
        rows, token = await keyset_page(
            session,
            stmt,
            NEWEST,
            page_size=page_size,
            page_token=page_token,
            query=("tasks", sorted(statuses), team_id, agent_id),
        )
        return rows, token

    async def assign(self, session: AsyncSession, task_id: str, agent_id: str = "") -> TaskRow:
        """Gives the task to `agent_id`, or with "" to an idle agent of the task's team (the task
        stays pending, queued, when none is idle; a task already held is returned as it is)."""
        row = await self._locked(session, task_id)
        if row.status in FINISHED:
            raise FailedPreconditionError(
                f"task {task_id} is already {row.status}",
                metadata={"taskId": task_id, "status": row.status},
            )
        if not agent_id:
            if not row.team_id:
                raise FailedPreconditionError(
                    f"task {task_id} has no team: name the agent to assign it to",
                    metadata={"taskId": task_id},
                )
            if row.status in HELD:
                return row
            agent = await self._idle_agent(session, row.team_id)
            if agent is not None:
                await self._give(session, row, agent.agent_id)
            return row
        if row.agent_id == agent_id and row.status in HELD:
            return row
        agent = await session.get(TeamAgentRow, agent_id, with_for_update=True)
        if agent is not None and agent.status in ENDED_AGENT:
            raise FailedPreconditionError(
                f"agent {agent_id} is {agent.status} and cannot take tasks",
                metadata={"taskId": task_id, "agentId": agent_id, "agentStatus": agent.status},
            )
        previous = row.agent_id if row.status in HELD else None
        await self._give(session, row, agent_id)
        if previous:
            await self._offer_to_team_of(session, previous)
        return row

    async def complete(
        self,
        session: AsyncSession,
        task_id: str,
        result: Mapping[str, Any] | None = None,
        error: str = "",
    ) -> TaskRow:
        """Finishes the task: `failed` when an error is given, else `completed`. Its agent, now
        free, gets the next task of its team."""
        row = await self._locked(session, task_id)
        if row.status in FINISHED:
            raise FailedPreconditionError(
                f"task {task_id} is already {row.status}",
                metadata={"taskId": task_id, "status": row.status},
            )
        holder = row.agent_id if row.status in HELD else None
        now = utcnow()
        row.status = TaskStatus.FAILED if error else TaskStatus.COMPLETED
        row.result = dict(result) if result else None
        row.error = error or None
        row.completed_at = now
        row.updated_at = now
        await self._publish(
            session, task_events_pb2.TaskFailed if error else task_events_pb2.TaskCompleted, row
        )
        if holder:
            await self._offer_to_team_of(session, holder)
        return row

    # ---- agents -------------------------------------------------------------------------------
    async def lock_agents(self, session: AsyncSession, events: Sequence[event_pb2.Event]) -> None:
        """Locks the team agents a batch of events is about in one statement (`on_agent_event` then
        reads none of them again; most agents are in no team, and that is known after it too)."""
        await lock_all(
            session, TeamAgentRow, [agent_id for agent_id, *_ in map(_moved_agent, events) if agent_id]
        )

    async def on_agent_event(self, session: AsyncSession, event: event_pb2.Event) -> None:
        """Follows one event of godel.agent.events (call it for every event, exactly once, in the
        consumer's transaction): keeps the team agents current, requeues the task of an agent that
        ended and gives queued tasks to agents that are idle."""
        agent_id, team_id, status = _moved_agent(event)
        if not agent_id or not status:
            return
        row = await locked(session, TeamAgentRow, agent_id)
        if row is None:
            if not team_id:
                return
            row = TeamAgentRow(agent_id=agent_id, team_id=team_id, status=status, updated_at=utcnow())
            session.add(row)
            hold(session, row)
        else:
            row.team_id = team_id or row.team_id
            row.status = status
            row.updated_at = utcnow()
        await session.flush()
        if status in ENDED_AGENT:
            await self._requeue_held_by(session, agent_id)
        elif status in LIVE_AGENT:
            await self._fill(session, row.team_id)

    # ---- internals ----------------------------------------------------------------------------
    async def _locked(self, session: AsyncSession, task_id: str) -> TaskRow:
        row = await session.get(TaskRow, task_id, with_for_update=True)
        if row is None:
            raise NotFoundError("task", task_id)
        return row

    async def _give(self, session: AsyncSession, row: TaskRow, agent_id: str) -> None:
        now = utcnow()
        row.status = TaskStatus.ASSIGNED
        row.agent_id = agent_id
        row.assigned_at = now
        row.updated_at = now
        await session.flush()
        await self._publish(session, task_events_pb2.TaskAssigned, row)

    async def _requeue_held_by(self, session: AsyncSession, agent_id: str) -> None:
        held = (
            await session.scalars(
                select(TaskRow)
                .where(TaskRow.agent_id == agent_id, TaskRow.status.in_(HELD))
                .order_by(TaskRow.created_at, TaskRow.id)
                .with_for_update()
            )
        ).all()
        teams = []
        for row in held:
            now = utcnow()
            row.status = TaskStatus.PENDING
            row.agent_id = None
            row.assigned_at = None
            row.updated_at = now
            await self._publish(session, task_events_pb2.TaskRequeued, row, previous_agent_id=agent_id)
            if row.team_id and row.team_id not in teams:
                teams.append(row.team_id)
        await session.flush()
        for team_id in teams:
            await self._fill(session, team_id)

    async def _offer_to_team_of(self, session: AsyncSession, agent_id: str) -> None:
        agent = await session.get(TeamAgentRow, agent_id)
        if agent is not None:
            await self._fill(session, agent.team_id)

    async def _fill(self, session: AsyncSession, team_id: str) -> None:
        """Pairs the team's pending tasks (highest priority, oldest first) with its idle agents
        until one side runs out."""
        while True:
            task = await session.scalar(
                select(TaskRow)
                .where(TaskRow.team_id == team_id, TaskRow.status == TaskStatus.PENDING)
                .order_by(TaskRow.priority.desc(), TaskRow.created_at, TaskRow.id)
                .limit(1)
                # Not skip_locked: a concurrent fill that holds this task may find no idle agent
                # (ours is freed by our uncommitted transaction) and leave it; skipping it here
                # too would leave it pending with an idle agent. Waiting costs one short lock.
                .with_for_update()
            )
            if task is None:
                return
            agent = await self._idle_agent(session, team_id)
            if agent is None:
                return
            await self._give(session, task, agent.agent_id)

    async def _idle_agent(self, session: AsyncSession, team_id: str) -> TeamAgentRow | None:
        """The team's live agent that holds no task and has waited longest, locked."""
        tried: list[str] = []
        while True:
            agent: TeamAgentRow | None = await session.scalar(
                select(TeamAgentRow)
                .where(
                    TeamAgentRow.team_id == team_id,
                    TeamAgentRow.status.in_(LIVE_AGENT),
                    TeamAgentRow.agent_id.not_in(tried),
                    ~self._holds_task(),
                )
                .order_by(TeamAgentRow.updated_at, TeamAgentRow.agent_id)
                .limit(1)
                .with_for_update(skip_locked=True, of=TeamAgentRow)
            )
            if agent is None:
                return None
            # Checked again under the lock: a transaction that gave this agent a task and committed
            # while the query above ran is only visible to a new statement (PostgreSQL).
            if not await session.scalar(select(self._holds_task(agent.agent_id))):
                return agent
            tried.append(agent.agent_id)

    @staticmethod
    def _holds_task(agent_id: str | None = None) -> Exists:
        holder = TeamAgentRow.agent_id if agent_id is None else agent_id
        return exists().where(TaskRow.agent_id == holder, TaskRow.status.in_(HELD))

    async def _publish(
        self, session: AsyncSession, kind: type[TaskEvent], row: TaskRow, previous_agent_id: str = ""
    ) -> None:
        data = kind(task=task_to_proto(row))
        if isinstance(data, task_events_pb2.TaskRequeued):
            data.previous_agent_id = previous_agent_id
        event = service_event(
            self._instance,
            data,
            key=row.id,
            agent_id=row.agent_id or "",
            team_id=row.team_id or "",
            owner=Owner(row.user_id, row.user_team_id),
        )
        await self._publisher.publish(session, [event])


def _moved_agent(event: event_pb2.Event) -> tuple[str, str, AgentStatus | None]:
    """The agent an event moves, its team and its new status ("" and None when it moves none)."""
    team_id = event.metadata.team_id
    match event_data(event):
        case agent_events_pb2.AgentSpawned(agent=agent):
            return agent.id, agent.team_id or team_id, AGENT_STATUS.get(agent.status) or AgentStatus.PENDING
        case agent_events_pb2.AgentDeleted(agent_id=agent_id):
            # A deleted agent is gone for good: it counts as killed.
            return agent_id, team_id, AgentStatus.KILLED
        case (
            agent_events_pb2.AgentStarted()
            | agent_events_pb2.AgentPaused()
            | agent_events_pb2.AgentResumed()
            | agent_events_pb2.AgentCompleted()
            | agent_events_pb2.AgentFailed()
            | agent_events_pb2.AgentKilled()
            | agent_events_pb2.AgentRestarted()
        ) as moved:
            return moved.transition.agent_id, team_id, AGENT_STATUS.get(moved.transition.to_status)
        case _:
            return "", team_id, None
