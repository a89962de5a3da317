"""PostgreSQL: the events table becomes time-partitioned (one partition per day of stored_at), with
the indexes of spec §2.4. SQLite keeps its single table (retention deletes rows there).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import op

from godel_server.event.partitions import PARTITIONS_AHEAD, create_day_sql, create_legacy_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    "sequence_number, id, event_type, timestamp, payload, source_component, source_instance, "
    "source_version, correlation_id, causation_id, trace_id, agent_id, team_id, workflow_id, user_id, "
    "partition_key, data, stored_at"
)
COLUMN_DDL = """
    sequence_number BIGINT NOT NULL,
    id VARCHAR(36) NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
    payload JSONB NOT NULL,
    source_component VARCHAR(100),
    source_instance VARCHAR(200),
    source_version VARCHAR(50),
    correlation_id VARCHAR(100),
    causation_id VARCHAR(100),
    trace_id VARCHAR(100),
    agent_id VARCHAR(36),
    team_id VARCHAR(36),
    workflow_id VARCHAR(36),
    user_id VARCHAR(100),
    partition_key VARCHAR(100),
    data BYTEA NOT NULL,
    stored_at TIMESTAMP WITH TIME ZONE NOT NULL
"""
# Spec §2.4 (timestamp DESC), plus the lookups the store makes (id for dedupe/get, workflow).
INDEXES = (
    ("idx_events_type", "event_type"),
    ("idx_events_timestamp", "timestamp DESC"),
    ("idx_events_correlation_id", "correlation_id"),
    ("idx_events_agent_id", "agent_id"),
    ("idx_events_team_id", "team_id"),
    ("idx_events_workflow_id", "workflow_id"),
    ("idx_events_trace_id", "trace_id"),
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgres():
        return
    today = datetime.now(UTC).date()
    op.execute(f"CREATE TABLE events_partitioned ({COLUMN_DDL}) PARTITION BY RANGE (stored_at)")
    op.execute(create_legacy_sql(today, parent="events_partitioned"))
    for offset in range(PARTITIONS_AHEAD + 1):
        op.execute(create_day_sql(today + timedelta(days=offset), parent="events_partitioned"))
    op.execute(f"INSERT INTO events_partitioned ({COLUMNS}) SELECT {COLUMNS} FROM events")
    op.execute("DROP TABLE events")
    op.execute("ALTER TABLE events_partitioned RENAME TO events")
    op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (sequence_number, stored_at)")
    op.execute("CREATE INDEX idx_events_id ON events (id)")
    for name, column in INDEXES:
        op.execute(f"CREATE INDEX {name} ON events ({column})")


def downgrade() -> None:
    if not _postgres():
        return
    op.execute(f"CREATE TABLE events_plain ({COLUMN_DDL})")
    op.execute(f"INSERT INTO events_plain ({COLUMNS}) SELECT {COLUMNS} FROM events")
    op.execute("DROP TABLE events")
    op.execute("ALTER TABLE events_plain RENAME TO events")
    op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (sequence_number)")
    op.execute("ALTER TABLE events ADD CONSTRAINT events_id_key UNIQUE (id)")
    for name, column in INDEXES:
        op.execute(f"CREATE INDEX {name} ON events ({column.removesuffix(' DESC')})")
