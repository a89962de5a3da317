"""Storage model of the agent service (spec §2.4 agents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from godel_server.runtime.sqltypes import JsonType


class Base(DeclarativeBase):
    metadata = MetaData()


class AgentRow(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    team_id: Mapped[str | None] = mapped_column(String(36))
    label: Mapped[str | None] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    context: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    code: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    reasoning: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    safety_boundaries: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(50), default="pending")
    lifecycle_state: Mapped[str] = mapped_column(String(50), default="initializing")
    repo: Mapped[str | None] = mapped_column(Text)
    worktree_path: Mapped[str | None] = mapped_column(Text)
    commits: Mapped[list[str]] = mapped_column(JsonType, default=list)
    spawned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pause_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_by: Mapped[str | None] = mapped_column(String(255))
    runtime_seconds: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    last_error: Mapped[str | None] = mapped_column(Text)
    budget_limit: Mapped[float | None] = mapped_column(Float)
    budget_consumed: Mapped[float] = mapped_column(Float, default=0.0)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=1)
    session_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        Index("idx_agents_team_id", "team_id"),
        Index("idx_agents_status", "status"),
        Index("idx_agents_lifecycle_state", "lifecycle_state"),
        Index("idx_agents_status_spawned", "status", "spawned_at"),
        Index("idx_agents_model", "model"),
        Index("idx_agents_label", "label"),
        Index("idx_agents_spawned_id", "spawned_at", "id"),
    )
