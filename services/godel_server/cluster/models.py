"""Storage model of the cluster service: the federation registry (clusters, session affinities),
users, user teams, login sessions, API keys, and the alert rules, alerts, silences, notification
channels and autonomic policies of the autonomic loop."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from godel_server.cluster.alerts.kinds import AlertState, ChannelType, Severity
from godel_server.cluster.snapshot import Operator
from godel_server.runtime.sqltypes import EnumString, JsonType, UtcDateTime
from godel_server.runtime.statuses import ClusterStatus


class Base(DeclarativeBase):
    metadata = MetaData()


class ClusterRow(Base):
    __tablename__ = "clusters"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    region: Mapped[str | None] = mapped_column(String(100))
    endpoint: Mapped[str] = mapped_column(String(500))
    api_version: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[ClusterStatus] = mapped_column(EnumString(ClusterStatus), default=ClusterStatus.OFFLINE)
    last_heartbeat: Mapped[datetime | None] = mapped_column(UtcDateTime)
    health_score: Mapped[int] = mapped_column(Integer, default=100)
    max_agents: Mapped[int] = mapped_column(Integer, default=0)
    current_agents: Mapped[int] = mapped_column(Integer, default=0)
    features: Mapped[list[str]] = mapped_column(JsonType, default=list)
    supported_models: Mapped[list[str]] = mapped_column(JsonType, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # What the health score was computed from (scoring.HealthFactors and the last probe), as the
    # registry last assessed it; {} before the first assessment.
    health: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)

    __table_args__ = (
        Index("idx_clusters_status", "status"),
        Index("idx_clusters_region", "region"),
    )


class AffinityRow(Base):
    """A session bound to a cluster until `expires_at` (spec §4.2 MultiClusterLoadBalancer affinity)."""

    __tablename__ = "cluster_affinities"

    session_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(36))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(50))
    user_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # 0 = the server's default (GODEL_RATE_LIMIT_PER_KEY).
    requests_per_second: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    # argon2id, in the PHC string format (algorithm, parameters and salt included).
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(50))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class UserTeamRow(Base):
    __tablename__ = "user_teams"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class UserTeamMemberRow(Base):
    __tablename__ = "user_team_members"

    team_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("user_teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("idx_user_team_members_user", "user_id"),)


class AuthSessionRow(Base):
    """A login session: the access tokens it issued are valid while it is neither revoked nor expired."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When its refresh token can no longer be exchanged (the session's end).
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("idx_auth_sessions_user", "user_id"),)


class RefreshTokenRow(Base):
    """One refresh token of a session, stored only as its hash; `used_at` is set when it is
    exchanged (a used token presented again revokes the session: it was stolen or replayed)."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("auth_sessions.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("idx_refresh_tokens_session", "session_id"),)


class AlertRuleRow(Base):
    """An alert rule (spec §4.3 AlertRule); the condition in columns, as rules are evaluated often."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    metric: Mapped[str] = mapped_column(String(255))
    operator: Mapped[Operator] = mapped_column(EnumString(Operator, 10))
    threshold: Mapped[float] = mapped_column(Float)
    labels: Mapped[dict[str, str]] = mapped_column(JsonType, default=dict)
    severity: Mapped[Severity] = mapped_column(EnumString(Severity, 20))
    channels: Mapped[list[str]] = mapped_column(JsonType, default=list)
    for_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    interval_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("idx_alert_rules_name_id", "name", "id"),)


class AlertRow(Base):
    """One firing of a rule for one series; kept, resolved, as the alert history."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(36))
    rule_name: Mapped[str] = mapped_column(String(255))
    severity: Mapped[Severity] = mapped_column(EnumString(Severity, 20))
    state: Mapped[AlertState] = mapped_column(EnumString(AlertState, 20))
    # The series' labels, sorted, as JSON: which series the alert is about.
    fingerprint: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, str]] = mapped_column(JsonType, default=dict)
    value: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    active_at: Mapped[datetime] = mapped_column(UtcDateTime)
    fired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    notified_channels: Mapped[list[str]] = mapped_column(JsonType, default=list)

    __table_args__ = (
        Index("idx_alerts_fired_id", "fired_at", "id"),
        Index("idx_alerts_state_fired", "state", "fired_at", "id"),
        Index("idx_alerts_rule_fired", "rule_id", "fired_at", "id"),
    )


class SilenceRow(Base):
    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    matchers: Mapped[dict[str, str]] = mapped_column(JsonType, default=dict)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    comment: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("idx_silences_ends", "ends_at", "id"),
        Index("idx_silences_created_id", "created_at", "id"),
    )


class ChannelRow(Base):
    """A notification channel; the webhook secret is write-only (never returned)."""

    __tablename__ = "notification_channels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[ChannelType] = mapped_column(EnumString(ChannelType, 20))
    url: Mapped[str | None] = mapped_column(String(2048))
    secret: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # OpenClaw channels: the Gateway's chat channel and the recipient on it.
    openclaw_channel: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (Index("idx_channels_name_id", "name", "id"),)


class PolicyRow(Base):
    """An autonomic policy (spec §4.3 AutonomicPolicy); trigger and action as their proto JSON."""

    __tablename__ = "autonomic_policies"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    action: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    cooldown_seconds: Mapped[float] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("idx_policies_name_id", "name", "id"),)


class CooldownRow(Base):
    """When a policy last acted on a target: it acts on it again after its cooldown."""

    __tablename__ = "autonomic_cooldowns"

    policy_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    acted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LeaseRow(Base):
    """A lease one replica holds to do work that must run once per installation (the autonomic
    loop): it renews it; another replica takes it when it lapses."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SeedRow(Base):
    """Defaults (alert rules, policies) created once per database: deleting one keeps it deleted."""

    __tablename__ = "seeds"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
