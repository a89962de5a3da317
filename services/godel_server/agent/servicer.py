"""AgentService: create, get, list and delete agents (the rest of the lifecycle lands with the
agent-execution work; those RPCs answer UNIMPLEMENTED until then)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format
from sqlalchemy.exc import IntegrityError

from godel.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, event_pb2
from godel_server.agent.mapping import (
    LIFECYCLE_FROM_PROTO,
    STATUS_FROM_PROTO,
    agent_to_proto,
    config_to_dict,
)
from godel_server.agent.models import AgentRow
from godel_server.agent.repository import AgentQuery, AgentRepository
from godel_server.agent.validation import check_create, check_id
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AgentNotFoundError, ValidationError
from godel_server.runtime.events import new_event, struct_to_dict, utcnow
from godel_server.runtime.pagination import decode_token, page_size, query_fingerprint, split_page
from godel_server.runtime.publisher import EventPublisher

COMPONENT = "agent-service"


class AgentServicer(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        db: Database,
        publisher: EventPublisher,
        *,
        default_model: str,
        default_repo: str | None,
        instance: str,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._default_model = default_model
        self._default_repo = default_repo
        self._instance = instance

    def _event(self, event_type: str, row: AgentRow, payload: dict[str, Any]) -> event_pb2.Event:
        """An event about one agent, keyed by its id so its events stay ordered on Kafka."""
        caller = current_caller()
        return new_event(
            event_type,
            payload,
            partition_key=row.id,
            component=COMPONENT,
            instance=self._instance,
            agent_id=row.id,
            team_id=row.team_id or "",
            user_id=caller.user_id if caller else "",
        )

    async def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_create(request)
        if request.request_id:
            async with self._db.reader() as session:
                existing = await AgentRepository(session).by_request_id(request.request_id)
            if existing is not None:
                return agent_to_proto(existing)
        now = utcnow()
        caller = current_caller()
        row = AgentRow(
            id=str(uuid.uuid4()),
            request_id=request.request_id or None,
            team_id=request.team_id or None,
            label=request.label or None,
            model=request.model or self._default_model,
            task=request.task,
            config=config_to_dict(request.config),
            context=struct_to_dict(request.context) or None,
            safety_boundaries=struct_to_dict(request.safety_boundaries) or None,
            status="pending",
            lifecycle_state="initializing",
            repo=request.repo or self._default_repo,
            commits=[],
            spawned_at=now,
            updated_at=now,
            runtime_seconds=0,
            retry_count=0,
            max_retries=request.max_retries if request.HasField("max_retries") else 3,
            budget_limit=request.budget_limit if request.HasField("budget_limit") else None,
            budget_consumed=0.0,
            meta=struct_to_dict(request.metadata),
            version=1,
            created_by=caller.key_id if caller else None,
        )
        agent = agent_to_proto(row)
        event = self._event("agent:spawn", row, {"agent": json_format.MessageToDict(agent)})
        try:
            async with self._db.session() as session:
                await AgentRepository(session).add(row)
                await self._publisher.publish(session, [event])
        except IntegrityError:
            if not request.request_id:
                raise
            async with self._db.reader() as session:
                existing = await AgentRepository(session).by_request_id(request.request_id)
            if existing is None:
                raise
            return agent_to_proto(existing)
        return agent

    async def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)
        async with self._db.reader() as session:
            row = await AgentRepository(session).get(request.id)
        if row is None:
            raise AgentNotFoundError(request.id)
        return agent_to_proto(row)

    async def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        size = page_size(request.page_size)
        query = AgentQuery(
            statuses=tuple(STATUS_FROM_PROTO[s] for s in request.status if s in STATUS_FROM_PROTO),
            lifecycle_states=tuple(
                LIFECYCLE_FROM_PROTO[s] for s in request.lifecycle_state if s in LIFECYCLE_FROM_PROTO
            ),
            team_id=request.team_id,
            model=request.model,
            label=request.label,
            spawned_after=request.spawned_after.ToDatetime(tzinfo=UTC)
            if request.HasField("spawned_after")
            else None,
            spawned_before=(
                request.spawned_before.ToDatetime(tzinfo=UTC) if request.HasField("spawned_before") else None
            ),
        )
        fingerprint = query_fingerprint(
            "agents",
            query.statuses,
            query.lifecycle_states,
            query.team_id,
            query.model,
            query.label,
            query.spawned_after,
            query.spawned_before,
        )
        cursor = decode_token(request.page_token, fingerprint)
        after = None
        if cursor is not None:
            try:
                after = (datetime.fromisoformat(cursor["t"]), str(cursor["id"]))
            except (KeyError, ValueError):
                raise ValidationError.single("page_token", "is not a token returned by this API") from None
        async with self._db.reader() as session:
            rows = await AgentRepository(session).find(query, limit=size + 1, after=after)
        page, token = split_page(
            rows, size, lambda r: {"t": r.spawned_at.isoformat(), "id": r.id}, fingerprint
        )
        return agent_service_pb2.ListAgentsResponse(
            agents=[agent_to_proto(r) for r in page], next_page_token=token
        )

    async def DeleteAgent(
        self, request: agent_service_pb2.DeleteAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.DeleteAgentResponse:
        check_id("id", request.id)
        async with self._db.session() as session:
            repo = AgentRepository(session)
            row = await repo.get(request.id)
            if row is None:
                raise AgentNotFoundError(request.id)
            event = self._event("agent:delete", row, {"agentId": row.id, "status": row.status})
            await repo.delete(row.id)
            await self._publisher.publish(session, [event])
        return agent_service_pb2.DeleteAgentResponse()
