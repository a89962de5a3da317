"""Storage model of the event store (spec §2.4 events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from godel_server.runtime.sqltypes import JsonType, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData()


class EventRow(Base):
    __tablename__ = "events"

    # Global, gap-free sequence assigned by the store; the primary key so scans by cursor are cheap.
    sequence_number: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime)
    # The payload as JSON, for SQL readers: the typed data of a service event, else the client's object.
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    source_component: Mapped[str | None] = mapped_column(String(100))
    source_instance: Mapped[str | None] = mapped_column(String(200))
    source_version: Mapped[str | None] = mapped_column(String(50))
    correlation_id: Mapped[str | None] = mapped_column(String(100))
    causation_id: Mapped[str | None] = mapped_column(String(100))
    trace_id: Mapped[str | None] = mapped_column(String(100))
    agent_id: Mapped[str | None] = mapped_column(String(36))
    team_id: Mapped[str | None] = mapped_column(String(36))
    workflow_id: Mapped[str | None] = mapped_column(String(36))
    user_id: Mapped[str | None] = mapped_column(String(100))
    # Who owns what the event is about, or who published it: reads are filtered by it (visibility.py).
    owner_user_id: Mapped[str | None] = mapped_column(String(100))
    owner_team_id: Mapped[str | None] = mapped_column(String(36))
    partition_key: Mapped[str | None] = mapped_column(String(100))
    # The envelope exactly as received (protobuf binary), returned verbatim with its sequence.
    data: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("idx_events_type", "event_type"),
        Index("idx_events_timestamp", "timestamp"),
        Index("idx_events_correlation_id", "correlation_id"),
        Index("idx_events_agent_id", "agent_id"),
        Index("idx_events_team_id", "team_id"),
        Index("idx_events_workflow_id", "workflow_id"),
        Index("idx_events_trace_id", "trace_id"),
        Index("idx_events_owner_user_id", "owner_user_id"),
        Index("idx_events_owner_team_id", "owner_team_id"),
    )


class SubscriptionRow(Base):
    """A durable subscription: a user's named filter and the cursor the server keeps for it."""

    __tablename__ = "event_subscriptions"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    patterns: Mapped[list[str]] = mapped_column(JsonType)
    agent_id: Mapped[str] = mapped_column(String(36), default="")
    team_id: Mapped[str] = mapped_column(String(36), default="")
    workflow_id: Mapped[str] = mapped_column(String(36), default="")
    correlation_id: Mapped[str] = mapped_column(String(100), default="")
    trace_id: Mapped[str] = mapped_column(String(100), default="")
    source_component: Mapped[str] = mapped_column(String(100), default="")
    last_sequence: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
