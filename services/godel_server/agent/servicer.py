"""AgentService: spawn, inspect and control agents (spec §3.1 Agents)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
)
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.lifecycle import TERMINAL
from godel_server.agent.logstore import LogStore
from godel_server.agent.mapping import (
    LIFECYCLE_FROM_PROTO,
    STATUS_FROM_PROTO,
    agent_to_proto,
    config_to_dict,
    log_to_proto,
    session_to_proto,
    transition_to_proto,
)
from godel_server.agent.models import AgentRow, AgentTransitionRow, SessionMessageRow, SessionRow
from godel_server.agent.repos import check_repo
from godel_server.agent.repository import AgentQuery, AgentRepository
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.state import AgentStateStore
from godel_server.agent.validation import check_create, check_id
from godel_server.runtime.context import current_caller
from godel_server.runtime.errors import AgentNotFoundError, NotFoundError, UnavailableError, ValidationError
from godel_server.runtime.events import struct_to_dict, utcnow
from godel_server.runtime.pagination import decode_token, page_size, query_fingerprint, split_page

log = logging.getLogger(__name__)


class AgentServicer(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        store: AgentStateStore,
        coordinator: RunCoordinator,
        logs: LogStore,
        *,
        default_model: str,
        default_repo: str | None,
        event_addr: str,
    ) -> None:
        self._store = store
        self._db = store.db
        self._publisher = store.publisher
        self._coordinator = coordinator
        self._registry = coordinator.registry
        self._logs = logs
        self._default_model = default_model
        self._default_repo = default_repo
        self._event_addr = event_addr
        self._event_channel: grpc.aio.Channel | None = None

    def _event(self, event_type: str, row: AgentRow, payload: dict[str, Any]) -> event_pb2.Event:
        return self._store.event(event_type, row, payload)

    async def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_create(request)
        repo = await check_repo(request.repo or self._default_repo or "")
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
            repo=repo,
            parent_session_id=request.parent_session_id or None,
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
            user_id=caller.user_id if caller else None,
        )
        agent = agent_to_proto(row)
        event = self._event("agent:spawn", row, {"agent": json_format.MessageToDict(agent)})
        try:
            async with self._db.session() as session:
                await AgentRepository(session).add(row)
                await self._publisher.publish(session, [event, self._store.run_request(row, "spawn")])
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
        if row.run_id:
            await self._control(row, wpb.CONTROL_ACTION_KILL, "agent deleted")
        if not row.config.get("keep_worktree"):
            await self._coordinator.cleanup(row.worker_id, row.id, row.worktree_path, row.repo)
        return agent_service_pb2.DeleteAgentResponse()

    # ---- control ----------------------------------------------------------------------------
    async def _control(self, row: AgentRow, action: wpb.ControlAction.ValueType, reason: str = "") -> None:
        """Tells the worker running the agent; if it cannot be reached now, the owner's supervisor
        reconciles the run with the state stored here."""
        conn = self._registry.get(row.worker_id)
        if conn is None or not row.run_id:
            return
        ack = await conn.control(row.run_id, row.id, action, reason=reason)
        if not ack.ok:
            log.warning(
                "worker did not confirm a control",
                extra={"agentId": row.id, "action": wpb.ControlAction.Name(action), "error": ack.error},
            )

    @staticmethod
    def _expected(request: Any) -> int | None:
        return request.expected_version if request.HasField("expected_version") else None

    async def PauseAgent(
        self, request: agent_service_pb2.PauseAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)
        caller = current_caller()
        by = request.paused_by or (caller.key_id if caller else "")

        async def change(session: AsyncSession, row: AgentRow) -> None:
            await self._store.apply(session, row, "pause_command", reason=f"paused by {by}")
            row.pause_time = utcnow()
            row.paused_by = by or None

        row, _ = await self._store.update(request.id, change, expected_version=self._expected(request))
        await self._control(row, wpb.CONTROL_ACTION_PAUSE)
        return agent_to_proto(row)

    async def ResumeAgent(
        self, request: agent_service_pb2.ResumeAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)

        async def change(session: AsyncSession, row: AgentRow) -> None:
            paused_for = (utcnow() - row.pause_time).total_seconds() if row.pause_time else 0.0
            await self._store.apply(session, row, "resume_command", extra={"pausedSeconds": paused_for})
            row.pause_time = None

        row, _ = await self._store.update(request.id, change, expected_version=self._expected(request))
        await self._control(row, wpb.CONTROL_ACTION_RESUME)
        return agent_to_proto(row)

    async def KillAgent(
        self, request: agent_service_pb2.KillAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)
        reason = request.reason or "killed through the API"

        async def change(session: AsyncSession, row: AgentRow) -> None:
            await self._store.apply(session, row, "kill_command", reason=reason)
            row.completed_at = utcnow()
            row.next_attempt_at = None

        row, _ = await self._store.update(request.id, change, expected_version=self._expected(request))
        if row.run_id:
            await self._control(row, wpb.CONTROL_ACTION_KILL, reason)
        elif not row.config.get("keep_worktree"):
            await self._coordinator.cleanup(row.worker_id, row.id, row.worktree_path, row.repo)
        return agent_to_proto(row)

    async def RestartAgent(
        self, request: agent_service_pb2.RestartAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)
        old: dict[str, str | None] = {}

        async def change(session: AsyncSession, row: AgentRow) -> None:
            old.update(run_id=row.run_id, worker_id=row.worker_id)
            await self._coordinator.close_session(session, row, "failed")
            await self._store.apply(session, row, "restart", reason="restarted through the API")
            row.run_id = None
            row.worker_id = None
            row.run_started_at = None
            row.next_attempt_at = None
            row.owner = None
            row.retry_count = 0
            row.last_error = None
            row.result = None
            row.completed_at = None
            row.pause_time = None
            await self._publisher.publish(session, [self._store.run_request(row, "restart")])

        row, _ = await self._store.update(request.id, change, expected_version=self._expected(request))
        conn = self._registry.get(old.get("worker_id"))
        if conn is not None and old.get("run_id"):
            await conn.control(old["run_id"] or "", row.id, wpb.CONTROL_ACTION_KILL, reason="restart")
        return agent_to_proto(row)

    # ---- history, sessions, logs, events ----------------------------------------------------
    async def ListAgentTransitions(
        self, request: agent_service_pb2.ListAgentTransitionsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentTransitionsResponse:
        check_id("id", request.id)
        size = page_size(request.page_size, default=100)
        fingerprint = query_fingerprint("transitions", request.id)
        after = _int_cursor(request.page_token, fingerprint)
        async with self._db.reader() as session:
            await self._require_agent(session, request.id)
            rows = (
                await session.scalars(
                    select(AgentTransitionRow)
                    .where(AgentTransitionRow.agent_id == request.id, AgentTransitionRow.id > after)
                    .order_by(AgentTransitionRow.id)
                    .limit(size + 1)
                )
            ).all()
        page, token = split_page(rows, size, lambda r: {"n": r.id}, fingerprint)
        return agent_service_pb2.ListAgentTransitionsResponse(
            transitions=[transition_to_proto(r) for r in page], next_page_token=token
        )

    async def ListAgentSessions(
        self, request: agent_service_pb2.ListAgentSessionsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentSessionsResponse:
        check_id("id", request.id)
        size = page_size(request.page_size)
        fingerprint = query_fingerprint("sessions", request.id)
        cursor = decode_token(request.page_token, fingerprint)
        async with self._db.reader() as session:
            await self._require_agent(session, request.id)
            stmt = select(SessionRow).where(SessionRow.agent_id == request.id)
            if cursor is not None:
                try:
                    t, last = datetime.fromisoformat(cursor["t"]), str(cursor["id"])
                except (KeyError, ValueError):
                    raise ValidationError.single(
                        "page_token", "is not a token returned by this API"
                    ) from None
                stmt = stmt.where(
                    or_(SessionRow.created_at > t, and_(SessionRow.created_at == t, SessionRow.id > last))
                )
            rows = (
                await session.scalars(stmt.order_by(SessionRow.created_at, SessionRow.id).limit(size + 1))
            ).all()
            page, token = split_page(
                rows, size, lambda r: {"t": r.created_at.isoformat(), "id": r.id}, fingerprint
            )
            sessions = [await self._session_proto(session, r, with_messages=False) for r in page]
        return agent_service_pb2.ListAgentSessionsResponse(sessions=sessions, next_page_token=token)

    async def GetSession(
        self, request: agent_service_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Session:
        check_id("id", request.id)
        async with self._db.reader() as session:
            row = await session.get(SessionRow, request.id)
            if row is None:
                raise NotFoundError("session", request.id)
            return await self._session_proto(session, row, with_messages=True)

    async def _session_proto(
        self, session: AsyncSession, row: SessionRow, *, with_messages: bool
    ) -> agent_pb2.Session:
        children = (await session.scalars(select(SessionRow.id).where(SessionRow.parent_id == row.id))).all()
        messages: list[SessionMessageRow] = []
        if with_messages:
            messages = list(
                (
                    await session.scalars(
                        select(SessionMessageRow)
                        .where(SessionMessageRow.session_id == row.id)
                        .order_by(SessionMessageRow.id)
                    )
                ).all()
            )
        return session_to_proto(row, list(children), messages)

    async def _require_agent(self, session: AsyncSession, agent_id: str) -> AgentRow:
        row = await session.get(AgentRow, agent_id)
        if row is None:
            raise AgentNotFoundError(agent_id)
        return row

    async def GetAgentLogs(
        self, request: agent_service_pb2.GetAgentLogsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.GetAgentLogsResponse:
        check_id("id", request.id)
        size = page_size(request.page_size, default=100)
        fingerprint = query_fingerprint("logs", request.id, request.session_id)
        after = _int_cursor(request.page_token, fingerprint)
        async with self._db.reader() as session:
            await self._require_agent(session, request.id)
        rows = await self._logs.page(request.id, after=after, limit=size + 1, session_id=request.session_id)
        page, token = split_page(rows, size, lambda r: {"n": r.sequence}, fingerprint)
        return agent_service_pb2.GetAgentLogsResponse(
            entries=[log_to_proto(r) for r in page], next_page_token=token
        )

    async def StreamAgentLogs(
        self, request: agent_service_pb2.StreamAgentLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_service_pb2.StreamAgentLogsResponse]:
        check_id("id", request.id)
        if request.after_sequence < 0:
            raise ValidationError.single("after_sequence", "must not be negative")
        after = request.after_sequence
        ending = False
        while True:
            rows = await self._logs.page(request.id, after=after, limit=500)
            for r in rows:
                after = r.sequence
                yield agent_service_pb2.StreamAgentLogsResponse(entry=log_to_proto(r))
            if len(rows) == 500:
                continue
            async with self._db.reader() as session:
                agent = await session.get(AgentRow, request.id)
            if agent is None:
                if after == request.after_sequence and not ending:
                    raise AgentNotFoundError(request.id)
                yield _stream_end(0, "agent deleted")
                return
            if _ended(agent):
                if ending:
                    yield _stream_end(0, f"agent {agent.lifecycle_state}")
                    return
                ending = True  # one more read for lines still being written
                await asyncio.sleep(0.3)
                continue
            await self._logs.wait_for_change(request.id, 1.0)

    async def ListAgentEvents(
        self, request: agent_service_pb2.ListAgentEventsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentEventsResponse:
        check_id("id", request.id)
        async with self._db.reader() as session:
            await self._require_agent(session, request.id)
        if self._event_channel is None:
            self._event_channel = grpc.aio.insecure_channel(self._event_addr)
        stub = event_service_pb2_grpc.EventServiceStub(self._event_channel)
        forwarded = [
            (k, v)
            for k, v in (context.invocation_metadata() or ())
            if k in ("x-api-key", "authorization", "x-request-id")
        ]
        try:
            response = await stub.QueryEvents(
                event_service_pb2.QueryEventsRequest(
                    agent_id=request.id, page_size=request.page_size, page_token=request.page_token
                ),
                metadata=forwarded,
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValidationError.single("page_token", exc.details() or "invalid") from None
            raise UnavailableError(f"event service: {exc.details()}") from None
        return agent_service_pb2.ListAgentEventsResponse(
            events=response.events, next_page_token=response.next_page_token
        )


def _int_cursor(token: str, fingerprint: str) -> int:
    cursor = decode_token(token, fingerprint)
    if cursor is None:
        return 0
    try:
        return int(cursor["n"])
    except (KeyError, ValueError, TypeError):
        raise ValidationError.single("page_token", "is not a token returned by this API") from None


def _ended(row: AgentRow) -> bool:
    if row.lifecycle_state in TERMINAL:
        return True
    return row.lifecycle_state == "failed" and row.next_attempt_at is None and row.run_id is None


def _stream_end(code: int, message: str) -> agent_service_pb2.StreamAgentLogsResponse:
    return agent_service_pb2.StreamAgentLogsResponse(
        end=agent_service_pb2.StreamEnd(code=code, message=message)
    )
