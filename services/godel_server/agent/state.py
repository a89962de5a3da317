"""Changes to agents: guarded lifecycle transitions with optimistic concurrency, their history row
and their event, committed together (spec §4.1 StateMachine, §2.3)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from godel.v1 import agent_events_pb2 as ev
from godel.v1 import agent_pb2, event_pb2
from godel_server.agent.lifecycle import Move, move
from godel_server.agent.mapping import agent_owner, agent_to_proto, transition_to_proto
from godel_server.agent.metrics import AGENTS_CREATED, observe_end
from godel_server.agent.models import AgentRow, AgentTransitionRow
from godel_server.agent.repository import AgentRepository
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AgentNotFoundError, ConflictError
from godel_server.runtime.events import message_class, new_event, utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.rows import insert_row

COMPONENT = "agent-service"
T = TypeVar("T")

TRANSITIONS = Counter("godel_agent_transitions_total", "Agent lifecycle transitions", ["trigger", "to"])


class AgentStateStore:
    def __init__(self, db: Database, publisher: EventPublisher, instance: str) -> None:
        self.db = db
        self.publisher = publisher
        self.instance = instance

    def event(self, data: Message, row: AgentRow) -> event_pb2.Event:
        """An event about one agent, keyed by its id so its events stay ordered on Kafka, owned by
        the agent's owner (who may read it: runtime/ownership.py)."""
        caller = current_caller()
        return new_event(
            data,
            partition_key=row.id,
            component=COMPONENT,
            instance=self.instance,
            agent_id=row.id,
            team_id=row.team_id or "",
            user_id=caller.user_id if caller else "",
            owner=agent_owner(row),
        )

    async def create(self, row: AgentRow) -> AgentRow:
        """Stores a new agent with its `agent:spawn` event and its first run request. A repeated
        request_id gives back the agent it created, also when two creates race."""
        event = self.event(ev.AgentSpawned(agent=agent_to_proto(row)), row)

        async def find(session: AsyncSession) -> AgentRow | None:
            return await AgentRepository(session).by_request_id(row.request_id or "", row.user_id)

        async def create(session: AsyncSession) -> AgentRow:
            await AgentRepository(session).add(row)
            await self.publisher.publish(session, [event, self.run_request(row, "spawn")])
            AGENTS_CREATED.inc()
            return row

        return await self.db.create_once(row.request_id or "", find, create)

    def run_request(self, row: AgentRow, reason: str) -> event_pb2.Event:
        """A request to run the agent, consumed by one replica of the agent-runner group."""
        return self.event(ev.RunRequested(agent_id=row.id, reason=reason), row)

    async def apply(
        self,
        session: AsyncSession,
        row: AgentRow,
        trigger: str,
        *,
        reason: str = "",
        actor: str = "",
        paused_seconds: float = 0.0,
    ) -> Move:
        """Moves the agent by `trigger` (FAILED_PRECONDITION if not allowed from its state), records
        the transition and publishes its event, all in the caller's transaction."""
        m = move(trigger, row.lifecycle_state, row.id)
        now = utcnow()
        row.lifecycle_state = m.to_state
        row.status = m.to_status
        row.updated_at = now
        # The agent moved: why it waited no longer holds (its owner notes a new reason if it waits).
        row.pending_reason = None
        row.pending_message = None
        caller = current_caller()
        actor = actor or (caller.key_id if caller else "system")
        transition = AgentTransitionRow(
            agent_id=row.id,
            version=row.version + 1,
            from_state=m.from_state,
            to_state=m.to_state,
            from_status=m.from_status,
            to_status=m.to_status,
            trigger=trigger,
            reason=reason or None,
            actor=actor,
            at=now,
        )
        await insert_row(session, transition)
        if m.event_type:
            data = transition_data(m.event_type, row, transition_to_proto(transition), paused_seconds)
            await self.publisher.publish(session, [self.event(data, row)])
        TRANSITIONS.labels(trigger, m.to_state).inc()
        observe_end(row, m.to_state, now)
        return m

    async def update(
        self,
        agent_id: str,
        change: Callable[[AsyncSession, AgentRow], Awaitable[T]],
        *,
        expected_version: int | None = None,
        retries: int = 3,
        guard: Callable[[AgentRow], None] | None = None,
    ) -> tuple[AgentRow, T]:
        """Loads the agent, applies `change` and commits; a concurrent change makes the commit fail
        (version check) and the change is retried on fresh data, unless the caller pinned a version.
        `guard` sees the agent first (an ownership check: it raises to refuse)."""
        attempt = 0
        while True:
            try:
                async with self.db.session() as session:
                    row = await session.get(AgentRow, agent_id, populate_existing=True)
                    if row is None:
                        raise AgentNotFoundError(agent_id)
                    if guard is not None:
                        guard(row)
                    if expected_version is not None and row.version != expected_version:
                        raise ConflictError(
                            f"agent {agent_id} is at version {row.version}, not {expected_version}",
                            metadata={"agentId": agent_id, "version": str(row.version)},
                        )
                    result = await change(session, row)
                    await session.flush()
                return row, result
            except StaleDataError:
                attempt += 1
                if expected_version is not None or attempt > retries:
                    raise ConflictError(
                        f"agent {agent_id} was changed concurrently; retry", metadata={"agentId": agent_id}
                    ) from None
                await asyncio.sleep(0.01 * attempt)


def transition_data(
    event_type: str, row: AgentRow, transition: agent_pb2.AgentTransition, paused_seconds: float
) -> Message:
    """The payload of the event a lifecycle transition emits: the transition, and what that event
    type adds to it."""
    data = message_class(event_type)(transition=transition)
    if isinstance(data, ev.AgentStarted | ev.AgentResumed):
        data.session_id = row.session_id or ""
    if isinstance(data, ev.AgentResumed):
        data.paused_seconds = paused_seconds
    elif isinstance(data, ev.AgentCompleted):
        data.agent.CopyFrom(agent_to_proto(row))
    elif isinstance(data, ev.AgentFailed):
        # Final: no retry follows (callers set completed_at first when they give up).
        data.final = row.completed_at is not None
        data.budget_consumed = row.budget_consumed or 0.0
    return data
