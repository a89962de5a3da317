"""AgentService: spawn, inspect and control agents (spec §3.1 Agents). An agent created through this
cluster that runs on a federation peer is answered for by the peer (federation.py): the calls about
one agent are `@federated`."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import (
    agent_events_pb2,
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
)
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.federation import Federation
from godel_server.agent.lifecycle import TERMINAL
from godel_server.agent.logstore import LogStore
from godel_server.agent.mapping import (
    agent_owner,
    agent_to_proto,
    log_to_proto,
    new_agent_row,
    session_to_proto,
    transition_to_proto,
    worker_to_proto,
)
from godel_server.agent.models import AgentRow, AgentView
from godel_server.agent.references import References
from godel_server.agent.repos import check_repo
from godel_server.agent.repository import AgentQuery, AgentRepository
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.state import AgentStateStore
from godel_server.agent.validation import check_create
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.context import current_caller
from godel_server.runtime.deadletter_rpcs import DeadLetterRpcs
from godel_server.runtime.errors import (
    AgentNotFoundError,
    NotFoundError,
    QuotaExceededError,
    UnavailableError,
    ValidationError,
)
from godel_server.runtime.events import utcnow
from godel_server.runtime.federation import AGENT_ID
from godel_server.runtime.ownership import Owner, check, creator, reach
from godel_server.runtime.statuses import (
    AGENT_STATUS,
    LIFECYCLE_STATE,
    LifecycleState,
    SessionStatus,
)
from godel_server.runtime.tls import open_channel
from godel_server.runtime.validation import Violations, check_id, is_uuid

log = logging.getLogger(__name__)
MAX_REASON = 2000

R = TypeVar("R")
Handler = Callable[["AgentServicer", Any, grpc.aio.ServicerContext], Awaitable[R]]


def federated(method: Handler[R]) -> Handler[R]:
    """The handler of a call about one agent (`request.id`): an agent that runs on a peer is
    answered for by the peer, with the same request and the caller's identity."""

    @functools.wraps(method)
    async def handler(self: AgentServicer, request: Any, context: grpc.aio.ServicerContext) -> R:
        placement = await self._federation.placement(request.id) if is_uuid(request.id) else None
        if placement is not None:
            reply: R = await self._federation.forward(placement, method.__name__, request, current_caller())
            return reply
        return await method(self, request, context)

    return handler


def federated_stream(
    method: Callable[[AgentServicer, Any, grpc.aio.ServicerContext], AsyncIterator[R]],
) -> Callable[[AgentServicer, Any, grpc.aio.ServicerContext], AsyncIterator[R]]:
    """`federated` for a server-streaming call."""

    @functools.wraps(method)
    async def handler(
        self: AgentServicer, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[R]:
        placement = await self._federation.placement(request.id) if is_uuid(request.id) else None
        replies = (
            self._federation.forward_stream(placement, method.__name__, request, current_caller())
            if placement is not None
            else method(self, request, context)
        )
        async for reply in replies:
            yield reply

    return handler


class AgentServicer(DeadLetterRpcs, agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        store: AgentStateStore,
        coordinator: RunCoordinator,
        logs: LogStore,
        *,
        default_model: str,
        default_repo: str | None,
        event_addr: str,
        tls: TlsSettings,
        federation: Federation,
        references: References,
        max_live_per_user: int = 0,
    ) -> None:
        self._references = references
        self._max_live_per_user = max_live_per_user
        self._store = store
        self._db = store.db
        self._publisher = store.publisher
        self._coordinator = coordinator
        self._registry = coordinator.registry
        self._logs = logs
        self._default_model = default_model
        self._default_repo = default_repo
        self._event_addr = event_addr
        self._tls = tls
        self._event_channel: grpc.aio.Channel | None = None
        self._federation = federation

    def _agent(self, row: AgentView) -> agent_pb2.Agent:
        """An agent of this cluster as the API shows it."""
        agent = agent_to_proto(row)
        agent.cluster = self._federation.name
        return agent

    async def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_create(request)
        caller = current_caller()
        owner = creator(request.owner_user_id, request.owner_team_id)
        if caller is None or not caller.origin_cluster:  # a peer's call was checked where it began
            if request.parent_session_id:
                await self._references.require_parent_session(request.parent_session_id)
            if request.team_id:
                await self._references.require_team(request.team_id, context.invocation_metadata() or ())
        peer = await self._federation.route(request, caller)
        if peer is not None:
            return await self._federation.create(request, caller, peer)
        repo = await check_repo(request.repo or self._default_repo or "")
        if owner.user_id is not None and self._max_live_per_user:
            await self._check_live_cap(owner.user_id, request.request_id)
        row = new_agent_row(
            request,
            model=request.model or self._default_model,
            repo=repo,
            caller=caller,
            owner=owner,
            agent_id=_placed_id(context) if caller is not None and caller.origin_cluster else "",
        )
        return self._agent(await self._store.create(row))

    async def _check_live_cap(self, user_id: str, request_id: str) -> None:
        """QUOTA_EXCEEDED when the user has as many agents that have not ended as allowed (a
        repeated request_id gives back its agent: no new one)."""
        async with self._db.reader() as session:
            repository = AgentRepository(session)
            if request_id and await repository.by_request_id(request_id, user_id) is not None:
                return
            live = await repository.count_live(user_id)
        if live >= self._max_live_per_user:
            raise QuotaExceededError(
                f"user {user_id} has {live} agents that have not ended, the most allowed at once "
                f"({self._max_live_per_user}); wait for some to finish, or kill them",
                metadata={"limit": str(self._max_live_per_user), "what": "running agents"},
            )

    @federated
    async def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)
        async with self._db.reader() as session:
            row = await AgentRepository(session).view(request.id)
        if row is None:
            raise AgentNotFoundError(request.id)
        _owned(row)
        return self._agent(row)

    async def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        query = AgentQuery(
            statuses=tuple(s for s in map(AGENT_STATUS.get, request.status) if s),
            lifecycle_states=tuple(s for s in map(LIFECYCLE_STATE.get, request.lifecycle_state) if s),
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
        async with self._db.reader() as session:
            rows, token = await AgentRepository(session).find(
                query, reach(), page_size=request.page_size, page_token=request.page_token
            )
        return agent_service_pb2.ListAgentsResponse(
            agents=[self._agent(r) for r in rows], next_page_token=token
        )

    async def DeleteAgent(
        self, request: agent_service_pb2.DeleteAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.DeleteAgentResponse:
        check_id("id", request.id)
        placement = await self._federation.placement(request.id)
        if placement is not None:
            await self._federation.delete(placement, request, current_caller())
            return agent_service_pb2.DeleteAgentResponse()
        async with self._db.session() as session:
            repo = AgentRepository(session)
            row = await repo.require(request.id)
            _owned(row)
            data = agent_events_pb2.AgentDeleted(agent_id=row.id, status=AGENT_STATUS.to_proto(row.status))
            event = self._store.event(data, row)
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

    @federated
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

        row, _ = await self._store.update(
            request.id, change, expected_version=self._expected(request), guard=_owned
        )
        await self._control(row, wpb.CONTROL_ACTION_PAUSE)
        return self._agent(row)

    @federated
    async def ResumeAgent(
        self, request: agent_service_pb2.ResumeAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)

        async def change(session: AsyncSession, row: AgentRow) -> None:
            paused_for = (utcnow() - row.pause_time).total_seconds() if row.pause_time else 0.0
            await self._store.apply(session, row, "resume_command", paused_seconds=paused_for)
            row.pause_time = None

        row, _ = await self._store.update(
            request.id, change, expected_version=self._expected(request), guard=_owned
        )
        await self._control(row, wpb.CONTROL_ACTION_RESUME)
        return self._agent(row)

    @federated
    async def KillAgent(
        self, request: agent_service_pb2.KillAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)
        reason = request.reason or "killed through the API"

        async def change(session: AsyncSession, row: AgentRow) -> None:
            await self._store.apply(session, row, "kill_command", reason=reason)
            row.completed_at = utcnow()
            row.next_attempt_at = None

        row, _ = await self._store.update(
            request.id, change, expected_version=self._expected(request), guard=_owned
        )
        if row.run_id:
            await self._control(row, wpb.CONTROL_ACTION_KILL, reason)
        elif not row.config.get("keep_worktree"):
            await self._coordinator.cleanup(row.worker_id, row.id, row.worktree_path, row.repo)
        return self._agent(row)

    @federated
    async def RestartAgent(
        self, request: agent_service_pb2.RestartAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        check_id("id", request.id)
        v = Violations()
        v.max_len("reason", request.reason, MAX_REASON)
        v.raise_if_any()
        reason = request.reason or "restarted through the API"
        old: dict[str, str | None] = {}

        async def change(session: AsyncSession, row: AgentRow) -> None:
            old.update(run_id=row.run_id, worker_id=row.worker_id)
            await self._coordinator.close_session(session, row, SessionStatus.FAILED)
            await self._store.apply(session, row, "restart", reason=reason)
            row.run_id = None
            row.worker_id = None
            row.run_started_at = None
            row.next_attempt_at = None
            row.owner = None
            row.retry_count = 0
            row.reschedules = 0
            row.last_error = None
            row.result = None
            row.completed_at = None
            row.pause_time = None
            await self._publisher.publish(session, [self._store.run_request(row, "restart")])

        row, _ = await self._store.update(
            request.id, change, expected_version=self._expected(request), guard=_owned
        )
        conn = self._registry.get(old.get("worker_id"))
        if conn is not None and old.get("run_id"):
            await conn.control(old["run_id"] or "", row.id, wpb.CONTROL_ACTION_KILL, reason="restart")
        return self._agent(row)

    # ---- history, sessions, logs, events ----------------------------------------------------
    @federated
    async def ListAgentTransitions(
        self, request: agent_service_pb2.ListAgentTransitionsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentTransitionsResponse:
        check_id("id", request.id)
        await self._require_agent(request.id)
        async with self._db.reader() as session:
            rows, token = await AgentRepository(session).transitions(
                request.id, page_size=request.page_size, page_token=request.page_token
            )
        return agent_service_pb2.ListAgentTransitionsResponse(
            transitions=[transition_to_proto(r) for r in rows], next_page_token=token
        )

    @federated
    async def ListAgentSessions(
        self, request: agent_service_pb2.ListAgentSessionsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentSessionsResponse:
        check_id("id", request.id)
        await self._require_agent(request.id)
        async with self._db.reader() as session:
            views, token = await AgentRepository(session).sessions(
                request.id, page_size=request.page_size, page_token=request.page_token
            )
        return agent_service_pb2.ListAgentSessionsResponse(
            sessions=[session_to_proto(v.row, v.children, v.messages) for v in views], next_page_token=token
        )

    async def GetSession(
        self, request: agent_service_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Session:
        check_id("id", request.id)
        async with self._db.reader() as session:
            repository = AgentRepository(session)
            view = await repository.session(request.id)
            agent = await repository.get(view.row.agent_id)
        # The session is the agent's: it is reached as its agent is (only scope all once it is gone).
        check(agent_owner(agent) if agent else Owner(None), NotFoundError("session", request.id))
        return session_to_proto(view.row, view.children, view.messages)

    async def _require_agent(self, agent_id: str) -> None:
        """NOT_FOUND unless the agent is here and the caller's permissions reach it for the
        current RPC, or it was created through this cluster for a peer."""
        async with self._db.reader() as session:
            row = await AgentRepository(session).get(agent_id)
        if row is not None:
            _owned(row)
            return
        if await self._federation.placement(agent_id) is None:
            raise AgentNotFoundError(agent_id)

    @federated
    async def GetAgentLogs(
        self, request: agent_service_pb2.GetAgentLogsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.GetAgentLogsResponse:
        check_id("id", request.id)
        await self._require_agent(request.id)
        rows, token = await self._logs.list_page(
            request.id,
            session_id=request.session_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return agent_service_pb2.GetAgentLogsResponse(
            entries=[log_to_proto(r) for r in rows], next_page_token=token
        )

    @federated_stream
    async def StreamAgentLogs(
        self, request: agent_service_pb2.StreamAgentLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_service_pb2.StreamAgentLogsResponse]:
        check_id("id", request.id)
        if request.after_sequence < 0:
            raise ValidationError.single("after_sequence", "must not be negative")
        async with self._db.reader() as session:
            first = await AgentRepository(session).get(request.id)
        # The logs of a deleted agent stay readable to scope all (the stream then ends at once).
        check(agent_owner(first) if first else Owner(None), AgentNotFoundError(request.id))
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
                agent = await AgentRepository(session).get(request.id)
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
        await self._require_agent(request.id)
        if self._event_channel is None:
            self._event_channel = open_channel(self._event_addr, self._tls)
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

    async def ListWorkers(
        self, request: agent_service_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListWorkersResponse:
        replica = self._coordinator.replica_id
        return agent_service_pb2.ListWorkersResponse(
            workers=[worker_to_proto(conn, replica) for conn in self._registry.connected()],
            replica_id=replica,
        )


def _owned(row: AgentView) -> None:
    """Refuses the current RPC on an agent the caller's permissions do not reach."""
    check(agent_owner(row), AgentNotFoundError(row.id))


def _placed_id(context: grpc.aio.ServicerContext) -> str:
    """The id a peer cluster gives an agent it places here (runtime/federation.py)."""
    return next(
        (v for k, v in context.invocation_metadata() or () if k == AGENT_ID and isinstance(v, str)), ""
    )


def _ended(row: AgentRow) -> bool:
    if row.lifecycle_state in TERMINAL:
        return True
    return row.lifecycle_state == LifecycleState.FAILED and row.next_attempt_at is None and row.run_id is None


def _stream_end(code: int, message: str) -> agent_service_pb2.StreamAgentLogsResponse:
    return agent_service_pb2.StreamAgentLogsResponse(
        end=agent_service_pb2.StreamEnd(code=code, message=message)
    )
