"""Migration helpers for the runtime tables every service database carries (outbox, dedupe log,
dead letters)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_runtime_tables() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_runtime_tables() -> None:
    op.drop_table("processed_events")
    op.drop_table("outbox")


def create_dead_letters() -> None:
    """The dead-letter table and the index that prunes the dedupe log (runtime/tables.py)."""
    op.create_table(
        "dead_letters",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36)),
        sa.Column("event_type", sa.String(100)),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200)),
        sa.Column("kafka_partition", sa.Integer()),
        sa.Column("kafka_offset", sa.BigInteger()),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("idx_dead_letters_source", "dead_letters", ["source", "id"])
    op.create_index("idx_processed_events_consumer_at", "processed_events", ["consumer", "processed_at"])


def drop_dead_letters() -> None:
    op.drop_index("idx_processed_events_consumer_at", table_name="processed_events")
    op.drop_index("idx_dead_letters_source", table_name="dead_letters")
    op.drop_table("dead_letters")
