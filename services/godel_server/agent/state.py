"""Changes to agents: guarded lifecycle transitions with optimistic concurrency, their history row
and their event, committed together (spec §4.1 StateMachine, §2.3)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf import json_format
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from godel.v1 import event_pb2
from godel_server.agent.lifecycle import Move, move
from godel_server.agent.mapping import agent_to_proto
from godel_server.agent.models import AgentRow, AgentTransitionRow
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AgentNotFoundError, ConflictError
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.publisher import EventPublisher

COMPONENT = "agent-service"
T = TypeVar("T")

TRANSITIONS = Counter("godel_agent_transitions_total", "Agent lifecycle transitions", ["trigger", "to"])


class AgentStateStore:
    def __init__(self, db: Database, publisher: EventPublisher, instance: str) -> None:
        self.db = db
        self.publisher = publisher
        self.instance = instance

    def event(self, event_type: str, row: AgentRow, payload: dict[str, Any]) -> event_pb2.Event:
        """An event about one agent, keyed by its id so its events stay ordered on Kafka."""
        caller = current_caller()
        return new_event(
            event_type,
            payload,
            partition_key=row.id,
            component=COMPONENT,
            instance=self.instance,
            agent_id=row.id,
            team_id=row.team_id or "",
            user_id=caller.user_id if caller else "",
        )

    def run_request(self, row: AgentRow, reason: str) -> event_pb2.Event:
        """A request to run the agent, consumed by one replica of the agent-runner group."""
        return self.event("run:requested", row, {"agentId": row.id, "reason": reason})

    async def apply(
        self,
        session: AsyncSession,
        row: AgentRow,
        trigger: str,
        *,
        reason: str = "",
        actor: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Move:
        """Moves the agent by `trigger` (FAILED_PRECONDITION if not allowed from its state), records
        the transition and publishes its event, all in the caller's transaction."""
        m = move(trigger, row.lifecycle_state, row.id)
        now = utcnow()
        row.lifecycle_state = m.to_state
        row.status = m.to_status
        row.updated_at = now
        caller = current_caller()
        actor = actor or (caller.key_id if caller else "system")
        session.add(
            AgentTransitionRow(
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
        )
        if m.event_type:
            payload: dict[str, Any] = {
                "agentId": row.id,
                "from": m.from_state,
                "to": m.to_state,
                "status": m.to_status,
                "trigger": trigger,
                "reason": reason,
                "sessionId": row.session_id or "",
                "version": row.version + 1,
                **(extra or {}),
            }
            if m.event_type == "agent:complete":
                payload["agent"] = json_format.MessageToDict(agent_to_proto(row))
            elif m.event_type == "agent:error":
                # Final: no retry follows (callers set completed_at first when they give up).
                payload["final"] = row.completed_at is not None
                payload["budgetConsumed"] = row.budget_consumed or 0.0
            await self.publisher.publish(session, [self.event(m.event_type, row, payload)])
        TRANSITIONS.labels(trigger, m.to_state).inc()
        return m

    async def update(
        self,
        agent_id: str,
        change: Callable[[AsyncSession, AgentRow], Awaitable[T]],
        *,
        expected_version: int | None = None,
        retries: int = 3,
    ) -> tuple[AgentRow, T]:
        """Loads the agent, applies `change` and commits; a concurrent change makes the commit fail
        (version check) and the change is retried on fresh data, unless the caller pinned a version."""
        attempt = 0
        while True:
            try:
                async with self.db.session() as session:
                    row = await session.get(AgentRow, agent_id, populate_existing=True)
                    if row is None:
                        raise AgentNotFoundError(agent_id)
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
