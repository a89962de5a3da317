"""The agent service's one mapping between protobuf (API edge) and storage rows."""

from __future__ import annotations

from google.protobuf import json_format

from godel.v1 import agent_pb2, agent_service_pb2
from godel_server.agent.models import (
    AgentLogRow,
    AgentRow,
    AgentTransitionRow,
    AgentView,
    SessionMessageRow,
    SessionRow,
)
from godel_server.agent.workers import ALIVE_RUN_STATES, WorkerConnection
from godel_server.runtime.context import Caller
from godel_server.runtime.enums import ProtoEnum, upper
from godel_server.runtime.events import set_structs, set_times, struct_to_dict, utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import Owner
from godel_server.runtime.secrets import mask_env
from godel_server.runtime.statuses import (
    AGENT_STATUS,
    LIFECYCLE_STATE,
    SESSION_STATUS,
    AgentStatus,
    LifecycleState,
)

# Log levels are stored by their upper-case names (TRACE .. FATAL).
LOG_LEVEL = ProtoEnum(agent_pb2.LogLevel, str, spelling=upper)


# Why an agent waits for a worker, stored by its short name ("no_worker").
PENDING_REASON = ProtoEnum(agent_pb2.PendingReason, str)


def config_to_dict(config: agent_pb2.AgentConfig) -> dict[str, object]:
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def config_from_dict(data: dict[str, object]) -> agent_pb2.AgentConfig:
    if not data:  # most agents: the parser would cost more than the rest of the agent's mapping
        return agent_pb2.AgentConfig()
    return json_format.ParseDict(data, agent_pb2.AgentConfig(), ignore_unknown_fields=True)


def new_agent_row(
    request: agent_service_pb2.CreateAgentRequest,
    *,
    model: str,
    repo: str | None,
    caller: Caller | None,
    owner: Owner,
    agent_id: str = "",
) -> AgentRow:
    """The row of an agent a CreateAgent request asks for (checked), before it first runs; its id
    is new unless given (a peer cluster creating an agent it placed here names it)."""
    now = utcnow()
    return AgentRow(
        id=agent_id or new_id(),
        request_id=request.request_id or None,
        team_id=request.team_id or None,
        label=request.label or None,
        model=model,
        task=request.task,
        config=config_to_dict(request.config),
        context=struct_to_dict(request.context) or None,
        safety_boundaries=struct_to_dict(request.safety_boundaries) or None,
        status=AgentStatus.PENDING,
        lifecycle_state=LifecycleState.INITIALIZING,
        repo=repo,
        parent_session_id=request.parent_session_id or None,
        commits=[],
        spawned_at=now,
        updated_at=now,
        runtime_seconds=0,
        retry_count=0,
        reschedules=0,
        max_retries=request.max_retries if request.HasField("max_retries") else 3,
        budget_limit=request.budget_limit if request.HasField("budget_limit") else None,
        budget_consumed=0.0,
        meta=struct_to_dict(request.metadata),
        version=1,
        created_by=caller.key_id if caller else None,
        user_id=owner.user_id,
        user_team_id=owner.team_id,
    )


def agent_to_proto(row: AgentView) -> agent_pb2.Agent:
    """The agent as every RPC and event shows it: config.env masked (mask_env)."""
    agent = agent_pb2.Agent(
        id=row.id,
        team_id=row.team_id or "",
        label=row.label or "",
        model=row.model,
        task=row.task,
        config=mask_env(config_from_dict(row.config)),
        status=AGENT_STATUS.to_proto(row.status),
        lifecycle_state=LIFECYCLE_STATE.to_proto(row.lifecycle_state),
        repo=row.repo or "",
        worktree=row.worktree_path or "",
        commits=list(row.commits or []),
        paused_by=row.paused_by or "",
        runtime_seconds=row.runtime_seconds,
        retry_count=row.retry_count,
        max_retries=row.max_retries,
        reschedules=row.reschedules or 0,
        last_error=row.last_error or "",
        budget_consumed=row.budget_consumed,
        version=row.version,
        session_id=row.session_id or "",
        result=row.result or "",
        worker_id=row.worker_id or "",
        prompt_tokens=row.prompt_tokens or 0,
        completion_tokens=row.completion_tokens or 0,
        pending_reason=PENDING_REASON.to_proto_or(row.pending_reason, agent_pb2.PENDING_REASON_UNSPECIFIED),
        pending_message=row.pending_message or "",
        owner_user_id=row.user_id or "",
        owner_team_id=row.user_team_id or "",
    )
    if row.budget_limit is not None:
        agent.budget_limit = row.budget_limit
    set_structs(
        agent,
        context=row.context,
        code=row.code,
        reasoning=row.reasoning,
        safety_boundaries=row.safety_boundaries,
        metadata=row.meta,
    )
    set_times(
        agent,
        spawned_at=row.spawned_at,
        completed_at=row.completed_at,
        pause_time=row.pause_time,
        updated_at=row.updated_at,
    )
    return agent


def transition_to_proto(row: AgentTransitionRow) -> agent_pb2.AgentTransition:
    t = agent_pb2.AgentTransition(
        agent_id=row.agent_id,
        version=row.version,
        from_state=LIFECYCLE_STATE.to_proto(row.from_state),
        to_state=LIFECYCLE_STATE.to_proto(row.to_state),
        from_status=AGENT_STATUS.to_proto(row.from_status),
        to_status=AGENT_STATUS.to_proto(row.to_status),
        trigger=row.trigger,
        reason=row.reason or "",
        actor=row.actor or "",
    )
    set_times(t, time=row.at)
    return t


def log_to_proto(row: AgentLogRow) -> agent_pb2.LogEntry:
    entry = agent_pb2.LogEntry(
        agent_id=row.agent_id,
        session_id=row.session_id or "",
        sequence=row.sequence,
        level=LOG_LEVEL.to_proto_or(row.level, agent_pb2.LOG_LEVEL_INFO),
        stream=row.stream,
        message=row.message,
    )
    set_times(entry, time=row.time)
    return entry


def session_to_proto(
    row: SessionRow, children: list[str], messages: list[SessionMessageRow]
) -> agent_pb2.Session:
    s = agent_pb2.Session(
        id=row.id,
        agent_id=row.agent_id,
        parent_id=row.parent_id or "",
        status=SESSION_STATUS.to_proto(row.status),
        children=children,
        depth=row.depth,
        context=agent_pb2.SessionContext(
            messages=[
                agent_pb2.SessionMessage(role=m.role, content=m.content, name=m.name or "") for m in messages
            ]
        ),
    )
    for proto_message, m in zip(s.context.messages, messages, strict=True):
        set_times(proto_message, created_at=m.created_at)
    set_structs(s, metadata=row.meta)
    set_structs(s.context, variables=row.variables)
    set_times(s, created_at=row.created_at, updated_at=row.updated_at, completed_at=row.completed_at)
    return s


def worker_to_proto(conn: WorkerConnection, replica_id: str) -> agent_pb2.Worker:
    return agent_pb2.Worker(
        id=conn.worker_id,
        hostname=conn.hostname,
        runtimes=sorted(conn.runtimes),
        capacity=conn.capacity,
        free_slots=max(conn.free, 0),
        active_runs=sum(1 for r in conn.runs.values() if r.state in ALIVE_RUN_STATES),
        replica_id=replica_id,
        labels=conn.labels,
    )


def agent_owner(row: AgentView) -> Owner:
    return Owner(row.user_id, row.user_team_id)


def agent_state(agent: agent_pb2.Agent) -> LifecycleState:
    """The lifecycle state an Agent message shows (initializing when it shows none)."""
    return LIFECYCLE_STATE.get(agent.lifecycle_state) or LifecycleState.INITIALIZING
