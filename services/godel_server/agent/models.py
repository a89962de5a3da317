"""Storage model of the agent service (spec §2.4 agents)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from godel_server.runtime.replicas import ReplicaColumns
from godel_server.runtime.sqltypes import EnumString, JsonType, UtcDateTime
from godel_server.runtime.statuses import AgentStatus, LifecycleState, SessionStatus


class Base(DeclarativeBase):
    metadata = MetaData()


class AgentRow(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The caller's idempotency key: unique per user (another user's request ids are not seen).
    request_id: Mapped[str | None] = mapped_column(String(100))
    team_id: Mapped[str | None] = mapped_column(String(36))
    label: Mapped[str | None] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    context: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    code: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    reasoning: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    safety_boundaries: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    status: Mapped[AgentStatus] = mapped_column(EnumString(AgentStatus), default=AgentStatus.PENDING)
    lifecycle_state: Mapped[LifecycleState] = mapped_column(
        EnumString(LifecycleState), default=LifecycleState.INITIALIZING
    )
    repo: Mapped[str | None] = mapped_column(Text)
    worktree_path: Mapped[str | None] = mapped_column(Text)
    commits: Mapped[list[str]] = mapped_column(JsonType, default=list)
    spawned_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    pause_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    paused_by: Mapped[str | None] = mapped_column(String(255))
    runtime_seconds: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    # Runs lost to infrastructure (a worker, replica or service crash) and run again.
    reschedules: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    budget_limit: Mapped[float | None] = mapped_column(Float)
    budget_consumed: Mapped[float] = mapped_column(Float, default=0.0)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    session_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str | None] = mapped_column(String(100))
    # The owner (ownership.Owner): the user who created the agent and the user team it is shared with.
    user_id: Mapped[str | None] = mapped_column(String(100))
    user_team_id: Mapped[str | None] = mapped_column(String(36))
    result: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    budget_warned: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_session_id: Mapped[str | None] = mapped_column(String(36))
    # Scheduling: the replica that owns the agent's runs, the run in flight and its worker.
    owner: Mapped[str | None] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(String(36))
    worker_id: Mapped[str | None] = mapped_column(String(255))
    run_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A retry waits until this time; None when no retry is pending.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Why the owner could not place the agent on a worker: a PendingReason name without its
    # prefix ("no_worker"), and the same in words; None once placed or moved on.
    pending_reason: Mapped[str | None] = mapped_column(String(30))
    pending_message: Mapped[str | None] = mapped_column(Text)

    __mapper_args__ = {"version_id_col": version}

    __table_args__ = (
        # Each list filter has an index in list order (newest first), so a page reads only its rows.
        Index("idx_agents_team_spawned", "team_id", "spawned_at", "id"),
        Index("idx_agents_status_spawned_id", "status", "spawned_at", "id"),
        Index("idx_agents_lifecycle_spawned", "lifecycle_state", "spawned_at", "id"),
        Index("idx_agents_model_spawned", "model", "spawned_at", "id"),
        Index("idx_agents_label_spawned", "label", "spawned_at", "id"),
        Index("idx_agents_spawned_id", "spawned_at", "id"),
        Index("idx_agents_owner", "owner"),
        Index("idx_agents_user_spawned", "user_id", "spawned_at", "id"),
        Index("idx_agents_user_team_spawned", "user_team_id", "spawned_at", "id"),
        # The per-user cap counts a user's live agents (AgentRepository.count_live).
        Index("idx_agents_user_lifecycle", "user_id", "lifecycle_state"),
        UniqueConstraint("user_id", "request_id", name="uq_agents_user_request"),
    )


class AgentRecord:
    """An agent's columns as the read-only paths select them (agent/repository.py AGENT_COLUMNS),
    read by AgentRow's attribute names. A plain object over a dict: reading an attribute of a
    SQLAlchemy Row costs ~0.4 µs, and showing an agent reads 38 of them."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__ = values

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


# An agent to read: its AgentRow, or its AgentRecord.
AgentView = AgentRow | AgentRecord


class AgentTransitionRow(Base):
    """One lifecycle transition (spec §4.1 StateMachine history)."""

    __tablename__ = "agent_transitions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(36), index=True)
    version: Mapped[int] = mapped_column(Integer)
    from_state: Mapped[LifecycleState] = mapped_column(EnumString(LifecycleState))
    to_state: Mapped[LifecycleState] = mapped_column(EnumString(LifecycleState))
    from_status: Mapped[AgentStatus] = mapped_column(EnumString(AgentStatus))
    to_status: Mapped[AgentStatus] = mapped_column(EnumString(AgentStatus))
    trigger: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class SessionRow(Base):
    """One run attempt of an agent (spec §2.1 Session)."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(36), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[SessionStatus] = mapped_column(EnumString(SessionStatus, 20))
    variables: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The highest RunUpdate/RunUsage seq of this run (session id = run id) applied: older ones
    # sent again by the worker are acknowledged and ignored.
    update_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class SessionMessageRow(Base):
    __tablename__ = "session_messages"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(36), index=True)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AgentLogRow(Base):
    __tablename__ = "agent_logs"

    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(36))
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    level: Mapped[str] = mapped_column(String(10))
    stream: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)


class ReplicaRow(ReplicaColumns, Base):
    """A live agent-service replica; its lease lapses when it stops renewing it."""

    __tablename__ = "agent_replicas"


class PlacementRow(Base):
    """An agent created through this cluster that runs on a peer cluster (README "Federation"): where
    it is, what it was created with (to place it again if that peer goes offline before it starts),
    and how far its events have been copied here."""

    __tablename__ = "agent_placements"

    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    # Name of the peer cluster that runs it.
    cluster: Mapped[str] = mapped_column(String(255), index=True)
    # Its lifecycle state as its copied events tell it.
    state: Mapped[LifecycleState] = mapped_column(EnumString(LifecycleState))
    # The CreateAgentRequest as the caller sent it (JSON), and who sent it ({keyId, userId, role}).
    request: Mapped[dict[str, Any]] = mapped_column(JsonType)
    creator: Mapped[dict[str, Any]] = mapped_column(JsonType)
    # Sequence (in the peer's event store) of the last of its events copied here.
    event_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    # Clusters it was moved away from that may still hold a copy to delete when they come back.
    replaced_from: Mapped[list[str]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
