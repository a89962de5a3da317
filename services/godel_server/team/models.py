"""Storage model of the team service (spec §2.4 teams, workflows, workflow_steps, budgets, plus
tasks, the agents the service spawned, and the team agents it has seen on Kafka)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, defer, mapped_column

from godel_server.runtime.replicas import ReplicaColumns
from godel_server.runtime.sqltypes import EnumString, JsonType, UtcDateTime
from godel_server.runtime.statuses import (
    AgentStatus,
    BudgetEntity,
    BudgetPeriod,
    StepStatus,
    TaskStatus,
    TeamStatus,
    WorkflowStatus,
)


class MemberStatus(StrEnum):
    """queued -> launching -> running (<-> paused) -> completed | failed | killed; `cancelled` when
    stopped before it ever launched."""

    QUEUED = "queued"
    LAUNCHING = "launching"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"
    CANCELLED = "cancelled"


class Base(DeclarativeBase):
    metadata = MetaData()


class TeamRow(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    # The short names of the proto's ExecutionStrategy (teams/strategies.py STRATEGY).
    execution_strategy: Mapped[str] = mapped_column(String(50))
    effective_strategy: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[TeamStatus] = mapped_column(EnumString(TeamStatus), default=TeamStatus.CREATING)
    task: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    budget_allocated: Mapped[float | None] = mapped_column(Float)
    budget_consumed: Mapped[float] = mapped_column(Float, default=0.0)
    created_by: Mapped[str | None] = mapped_column(String(255))
    # The owner (runtime/ownership.py): the creating user and the user team it is shared with.
    user_id: Mapped[str | None] = mapped_column(String(100))
    user_team_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    # The team-service replica that drives it (team/replicas.py): its timers and pending agent calls.
    replica: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("idx_teams_status", "status"),
        Index("idx_teams_replica", "replica"),
        Index("idx_teams_created_at", "created_at", "id"),
        Index("idx_teams_user", "user_id"),
        Index("idx_teams_user_team", "user_team_id"),
        UniqueConstraint("user_id", "request_id", name="uq_teams_user_request"),
    )


class MemberRow(Base):
    """One agent the team service spawns for a team member or a workflow step. Its id is the
    CreateAgent request id (so a relaunch after a crash gets the same agent) and travels in the
    agent's metadata as `godelMember`."""

    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(36))
    workflow_id: Mapped[str | None] = mapped_column(String(36))
    step_id: Mapped[str | None] = mapped_column(String(100))
    # worker, splitter, mapper, reducer, stage, node, step
    role: Mapped[str] = mapped_column(String(50))
    position: Mapped[int] = mapped_column(Integer, default=0)
    parent_id: Mapped[str | None] = mapped_column(String(36))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    task: Mapped[str] = mapped_column(Text)
    input: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[MemberStatus] = mapped_column(EnumString(MemberStatus), default=MemberStatus.LAUNCHING)
    agent_id: Mapped[str | None] = mapped_column(String(36))
    session_id: Mapped[str | None] = mapped_column(String(36))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    # Set when the member's agent must be stopped (kill sent after commit, resent after a crash).
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # A member that no longer counts (scaled away or replaced by a retry).
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("idx_members_team", "team_id", "position"),
        Index("idx_members_workflow", "workflow_id"),
        Index("idx_members_agent", "agent_id"),
        Index("idx_members_status", "status"),
    )


class WorkflowRow(Base):
    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[WorkflowStatus] = mapped_column(EnumString(WorkflowStatus), default=WorkflowStatus.PENDING)
    current_step_id: Mapped[str | None] = mapped_column(String(100))
    context: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    results: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every transaction that changes the workflow's steps (see workflows/engine.py).
    version: Mapped[int] = mapped_column(Integer, default=0)
    team_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str | None] = mapped_column(String(255))
    # The owner (runtime/ownership.py): the creating user and the user team it is shared with.
    user_id: Mapped[str | None] = mapped_column(String(100))
    user_team_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    # The team-service replica that drives it (team/replicas.py): its timers and pending agent calls.
    replica: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("idx_workflows_status", "status"),
        Index("idx_workflows_replica", "replica"),
        Index("idx_workflows_team_id", "team_id"),
        Index("idx_workflows_created_at", "created_at", "id"),
        Index("idx_workflows_user", "user_id"),
        Index("idx_workflows_user_team", "user_team_id"),
        UniqueConstraint("user_id", "request_id", name="uq_workflows_user_request"),
    )


# Loads a workflow's row without its definition (large, immutable: parsed once per process). Built
# once: a lock of a member's workflow per event made a new option object each time.
WITHOUT_DEFINITION = defer(WorkflowRow.definition)


class WorkflowStepRow(Base):
    __tablename__ = "workflow_steps"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(36))
    step_id: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(Text)
    dependencies: Mapped[list[str]] = mapped_column(JsonType, default=list)
    status: Mapped[StepStatus] = mapped_column(EnumString(StepStatus), default=StepStatus.PENDING)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    agent_id: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (
        UniqueConstraint("workflow_id", "step_id", name="uq_workflow_steps_step"),
        Index("idx_workflow_steps_workflow_id", "workflow_id", "position"),
    )


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[TaskStatus] = mapped_column(EnumString(TaskStatus), default=TaskStatus.PENDING)
    # 1 low .. 4 critical
    priority: Mapped[int] = mapped_column(Integer, default=2)
    team_id: Mapped[str | None] = mapped_column(String(36))
    agent_id: Mapped[str | None] = mapped_column(String(36))
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(255))
    # The owner (runtime/ownership.py): the creating user and the user team it is shared with.
    user_id: Mapped[str | None] = mapped_column(String(100))
    user_team_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)

    __table_args__ = (
        Index("idx_tasks_queue", "team_id", "status", "priority", "created_at"),
        Index("idx_tasks_agent", "agent_id"),
        Index("idx_tasks_created_at", "created_at", "id"),
        Index("idx_tasks_user", "user_id"),
        Index("idx_tasks_user_team", "user_team_id"),
        UniqueConstraint("user_id", "request_id", name="uq_tasks_user_request"),
    )


class TeamAgentRow(Base):
    """Agents that belong to a team, as seen in the agent events on Kafka (for task assignment)."""

    __tablename__ = "team_agents"

    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[AgentStatus] = mapped_column(EnumString(AgentStatus))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("idx_team_agents_team", "team_id", "status"),)


class BudgetRow(Base):
    __tablename__ = "budgets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    entity_type: Mapped[BudgetEntity] = mapped_column(EnumString(BudgetEntity))
    entity_id: Mapped[str] = mapped_column(String(255))
    total_budget: Mapped[float] = mapped_column(Float)
    used_budget: Mapped[float] = mapped_column(Float, default=0.0)
    currency: Mapped[str] = mapped_column(String(10), default="USD")
    period: Mapped[BudgetPeriod] = mapped_column(EnumString(BudgetPeriod, 20), default=BudgetPeriod.NONE)
    period_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    period_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    warned: Mapped[bool] = mapped_column(Boolean, default=False)
    exceeded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("entity_type", "entity_id", name="uq_budgets_entity"),)


class TeamReplicaRow(ReplicaColumns, Base):
    """A live team-service replica; its lease lapses when it stops renewing it (team/replicas.py)."""

    __tablename__ = "team_replicas"
