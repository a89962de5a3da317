"""The agent service's one mapping between protobuf (API edge) and storage rows."""

from __future__ import annotations

from google.protobuf import json_format

from godel.v1 import agent_pb2
from godel_server.agent.models import AgentLogRow, AgentRow, AgentTransitionRow, SessionMessageRow, SessionRow
from godel_server.runtime.events import set_structs, set_times

STATUS_TO_PROTO: dict[str, agent_pb2.AgentStatus.ValueType] = {
    "pending": agent_pb2.AGENT_STATUS_PENDING,
    "initializing": agent_pb2.AGENT_STATUS_INITIALIZING,
    "running": agent_pb2.AGENT_STATUS_RUNNING,
    "paused": agent_pb2.AGENT_STATUS_PAUSED,
    "completed": agent_pb2.AGENT_STATUS_COMPLETED,
    "failed": agent_pb2.AGENT_STATUS_FAILED,
    "killed": agent_pb2.AGENT_STATUS_KILLED,
}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}

LIFECYCLE_TO_PROTO: dict[str, agent_pb2.LifecycleState.ValueType] = {
    "initializing": agent_pb2.LIFECYCLE_STATE_INITIALIZING,
    "spawning": agent_pb2.LIFECYCLE_STATE_SPAWNING,
    "executing": agent_pb2.LIFECYCLE_STATE_EXECUTING,
    "waiting": agent_pb2.LIFECYCLE_STATE_WAITING,
    "paused": agent_pb2.LIFECYCLE_STATE_PAUSED,
    "completing": agent_pb2.LIFECYCLE_STATE_COMPLETING,
    "cleaning_up": agent_pb2.LIFECYCLE_STATE_CLEANING_UP,
    "completed": agent_pb2.LIFECYCLE_STATE_COMPLETED,
    "failed": agent_pb2.LIFECYCLE_STATE_FAILED,
    "killed": agent_pb2.LIFECYCLE_STATE_KILLED,
}
LIFECYCLE_FROM_PROTO = {v: k for k, v in LIFECYCLE_TO_PROTO.items()}


def config_to_dict(config: agent_pb2.AgentConfig) -> dict[str, object]:
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def config_from_dict(data: dict[str, object]) -> agent_pb2.AgentConfig:
    return json_format.ParseDict(data or {}, agent_pb2.AgentConfig(), ignore_unknown_fields=True)


def agent_to_proto(row: AgentRow) -> agent_pb2.Agent:
    agent = agent_pb2.Agent(
        id=row.id,
        team_id=row.team_id or "",
        label=row.label or "",
        model=row.model,
        task=row.task,
        config=config_from_dict(row.config),
        status=STATUS_TO_PROTO[row.status],
        lifecycle_state=LIFECYCLE_TO_PROTO[row.lifecycle_state],
        repo=row.repo or "",
        worktree=row.worktree_path or "",
        commits=list(row.commits or []),
        paused_by=row.paused_by or "",
        runtime_seconds=row.runtime_seconds,
        retry_count=row.retry_count,
        max_retries=row.max_retries,
        last_error=row.last_error or "",
        budget_consumed=row.budget_consumed,
        version=row.version,
        session_id=row.session_id or "",
        result=row.result or "",
        worker_id=row.worker_id or "",
        prompt_tokens=row.prompt_tokens or 0,
        completion_tokens=row.completion_tokens or 0,
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


SESSION_STATUS_TO_PROTO: dict[str, agent_pb2.SessionStatus.ValueType] = {
    "pending": agent_pb2.SESSION_STATUS_PENDING,
    "active": agent_pb2.SESSION_STATUS_ACTIVE,
    "paused": agent_pb2.SESSION_STATUS_PAUSED,
    "completed": agent_pb2.SESSION_STATUS_COMPLETED,
    "failed": agent_pb2.SESSION_STATUS_FAILED,
}
LEVEL_TO_PROTO: dict[str, agent_pb2.LogLevel.ValueType] = {
    "TRACE": agent_pb2.LOG_LEVEL_TRACE,
    "DEBUG": agent_pb2.LOG_LEVEL_DEBUG,
    "INFO": agent_pb2.LOG_LEVEL_INFO,
    "WARN": agent_pb2.LOG_LEVEL_WARN,
    "ERROR": agent_pb2.LOG_LEVEL_ERROR,
    "FATAL": agent_pb2.LOG_LEVEL_FATAL,
}


def transition_to_proto(row: AgentTransitionRow) -> agent_pb2.AgentTransition:
    t = agent_pb2.AgentTransition(
        agent_id=row.agent_id,
        version=row.version,
        from_state=LIFECYCLE_TO_PROTO[row.from_state],
        to_state=LIFECYCLE_TO_PROTO[row.to_state],
        from_status=STATUS_TO_PROTO[row.from_status],
        to_status=STATUS_TO_PROTO[row.to_status],
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
        level=LEVEL_TO_PROTO.get(row.level, agent_pb2.LOG_LEVEL_INFO),
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
        status=SESSION_STATUS_TO_PROTO.get(row.status, agent_pb2.SESSION_STATUS_UNSPECIFIED),
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
