"""alert rules, alerts, silences, notification channels, autonomic policies and cooldowns, the
loop's lease and the record of defaults created (seeds)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        sa.Column("metric", sa.String(255), nullable=False),
        sa.Column("operator", sa.String(10), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("for_seconds", sa.Float(), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
    )
    op.create_index("idx_alert_rules_name_id", "alert_rules", ["name", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("rule_id", sa.String(36), nullable=False),
        sa.Column("rule_name", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        _time("active_at"),
        _time("fired_at"),
        _time("resolved_at", nullable=True),
        sa.Column("silenced", sa.Boolean(), nullable=False),
        sa.Column("notified_channels", JSON, nullable=False),
    )
    op.create_index("idx_alerts_fired_id", "alerts", ["fired_at", "id"])
    op.create_index("idx_alerts_state_fired", "alerts", ["state", "fired_at", "id"])
    op.create_index("idx_alerts_rule_fired", "alerts", ["rule_id", "fired_at", "id"])
    op.create_table(
        "silences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("matchers", JSON, nullable=False),
        _time("starts_at"),
        _time("ends_at"),
        sa.Column("comment", sa.Text()),
        sa.Column("created_by", sa.String(100)),
        _time("created_at"),
    )
    op.create_index("idx_silences_ends", "silences", ["ends_at", "id"])
    op.create_index("idx_silences_created_id", "silences", ["created_at", "id"])
    op.create_table(
        "notification_channels",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("url", sa.String(2048)),
        sa.Column("secret", sa.String(255)),
        _time("created_at"),
    )
    op.create_index("idx_channels_name_id", "notification_channels", ["name", "id"])
    op.create_table(
        "autonomic_policies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        sa.Column("trigger", JSON, nullable=False),
        sa.Column("action", JSON, nullable=False),
        sa.Column("cooldown_seconds", sa.Float(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
    )
    op.create_index("idx_policies_name_id", "autonomic_policies", ["name", "id"])
    op.create_table(
        "autonomic_cooldowns",
        sa.Column("policy_id", sa.String(36), primary_key=True),
        sa.Column("target", sa.String(255), primary_key=True),
        _time("acted_at"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        _time("expires_at"),
    )
    op.create_table(
        "seeds",
        sa.Column("name", sa.String(100), primary_key=True),
        _time("created_at"),
    )


def downgrade() -> None:
    for table in (
        "seeds",
        "leases",
        "autonomic_cooldowns",
        "autonomic_policies",
        "notification_channels",
        "silences",
        "alerts",
        "alert_rules",
    ):
        op.drop_table(table)
