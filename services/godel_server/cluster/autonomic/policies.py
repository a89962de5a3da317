"""Autonomic policies (spec §4.3 AutonomicOrchestrator) as plain data, and the decisions made from
them without storage or network: which policies trigger on a snapshot of the metrics, the firing
alerts and the clock; what each would act on (its target, filled from the trigger's labels); whether
its cooldown on that target still runs; and how an autoscaling team may be resized within its
bounds. The spec's self-healing table is DEFAULT_POLICIES."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from godel.v1 import autonomic_pb2, team_pb2
from godel_server.cluster.alerts.rules import Tracked
from godel_server.cluster.autonomic.cron import Cron
from godel_server.cluster.snapshot import Condition, Operator, Snapshot
from godel_server.runtime.enums import ProtoEnum, kebab


class ActionType(StrEnum):
    RESTART = "restart"
    SCALE_UP = "scale-up"
    SCALE_DOWN = "scale-down"
    REBALANCE = "rebalance"
    FAILOVER = "failover"
    NOTIFY = "notify"


class Readiness(StrEnum):
    READY = "ready"
    COOLING_DOWN = "cooling_down"
    HELD = "held"


ACTION_TYPE = ProtoEnum(autonomic_pb2.AutonomicActionType, ActionType, spelling=kebab)
READINESS = ProtoEnum(autonomic_pb2.RecommendationState, Readiness)
# Actions whose target names something (the others act on the place the trigger names).
TARGETED = frozenset({ActionType.RESTART, ActionType.SCALE_UP, ActionType.SCALE_DOWN, ActionType.FAILOVER})
PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


@dataclass(frozen=True)
class Action:
    type: ActionType
    target: str = ""
    delta: int = 1
    channel: str = ""
    message: str = ""


@dataclass(frozen=True)
class MetricTrigger:
    condition: Condition


@dataclass(frozen=True)
class AlertTrigger:
    rule: str  # the rule's id or name


@dataclass(frozen=True)
class ScheduleTrigger:
    cron: Cron
    expression: str


Trigger = MetricTrigger | AlertTrigger | ScheduleTrigger


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    trigger: Trigger
    action: Action
    cooldown_seconds: float


@dataclass(frozen=True)
class Hit:
    """One reason a policy triggered: the labels of the series or alert, its value, in words."""

    labels: Mapping[str, str]
    value: float
    reason: str


@dataclass(frozen=True)
class Proposal:
    """A policy's action on one target (filled in), and why."""

    policy: Policy
    action: Action
    hit: Hit

    @property
    def key(self) -> tuple[str, str]:
        return (self.policy.id, self.action.target)


def fill(template: str, labels: Mapping[str, str]) -> str | None:
    """`{team_id}` and the like replaced by the labels' values; None when one is missing or empty."""
    missing = False

    def value(m: re.Match[str]) -> str:
        nonlocal missing
        found = labels.get(m.group(1), "")
        missing = missing or not found
        return found

    filled = PLACEHOLDER.sub(value, template)
    return None if missing else filled


def hits(
    policy: Policy, snapshot: Snapshot, firing: Sequence[Tracked], since: datetime, until: datetime
) -> list[Hit]:
    trigger = policy.trigger
    if isinstance(trigger, MetricTrigger):
        c = trigger.condition
        return [Hit(s.labels, s.value, c.explain(s)) for s in c.holding(snapshot)]
    if isinstance(trigger, AlertTrigger):
        return [
            Hit(t.labels, t.value, f"alert {t.rule.name} firing ({t.labels})")
            for t in firing
            if trigger.rule in (t.rule.id, t.rule.name)
        ]
    at = trigger.cron.fired(since, until)
    return [Hit({}, 0.0, f"schedule {trigger.expression!r} at {at:%Y-%m-%d %H:%M} UTC")] if at else []


def propose(
    policies: Sequence[Policy],
    snapshot: Snapshot,
    firing: Sequence[Tracked],
    since: datetime,
    until: datetime,
) -> list[Proposal]:
    """What the policies would do: one proposal per policy and target (the first hit wins)."""
    proposals: dict[tuple[str, str], Proposal] = {}
    for policy in policies:
        for hit in hits(policy, snapshot, firing, since, until):
            target = fill(policy.action.target, hit.labels)
            message = fill(policy.action.message, hit.labels)
            if target is None or (policy.action.type in TARGETED and not target):
                continue  # the series names nothing to act on (e.g. tasks of no team)
            action = replace(policy.action, target=target, message=message or policy.action.message)
            proposals.setdefault((policy.id, target), Proposal(policy, action, hit))
    return list(proposals.values())


def cooling_until(policy: Policy, acted_at: datetime | None) -> datetime | None:
    return acted_at + timedelta(seconds=policy.cooldown_seconds) if acted_at is not None else None


@dataclass(frozen=True)
class Plan:
    """Whether an action applies now, and what it would change."""

    ready: bool
    note: str = ""
    previous_size: int = 0
    target_size: int = 0
    # A restart: the version of the agent the plan saw (it restarts that agent state or none).
    agent_version: int | None = None


def held(note: str) -> Plan:
    return Plan(False, note)


@dataclass(frozen=True)
class Assessment:
    proposal: Proposal
    readiness: Readiness
    plan: Plan
    not_before: datetime | None = None


def assess(proposal: Proposal, plan: Plan, acted_at: datetime | None, now: datetime) -> Assessment:
    """READY when the plan applies and the policy's cooldown on the target is over."""
    until = cooling_until(proposal.policy, acted_at)
    if until is not None and now < until:
        return Assessment(proposal, Readiness.COOLING_DOWN, plan, until)
    return Assessment(proposal, Readiness.READY if plan.ready else Readiness.HELD, plan)


def plan_scale(action: Action, team: team_pb2.Team) -> Plan:
    """The new size of an autoscaling parallel team: `delta` more or fewer members, within
    minAgents..maxAgents (maxAgents must be set: it is what autoscaling may grow to)."""
    config = team.config
    if not config.auto_scale:
        return held(f"team {team.id} does not autoscale (autoScale is off)")
    strategy = team.effective_strategy or team.execution_strategy
    if strategy not in (team_pb2.EXECUTION_STRATEGY_PARALLEL, team_pb2.EXECUTION_STRATEGY_UNSPECIFIED):
        return held(f"team {team.id}: autoscaling resizes parallel teams")
    if team.status != team_pb2.TEAM_STATUS_ACTIVE:
        return held(f"team {team.id} is {team_pb2.TeamStatus.Name(team.status)}, not active")
    if config.max_agents <= 0:
        return held(f"team {team.id} has no maxAgents to grow to")
    current = config.size or len(team.agent_ids)
    low, high = max(1, config.min_agents), config.max_agents
    if action.type == ActionType.SCALE_UP:
        target = min(high, current + max(1, action.delta))
        bound = f"its maxAgents ({high})"
    else:
        target = max(low, current - max(1, action.delta))
        bound = f"its minAgents ({low})"
    if target == current:
        return held(f"team {team.id} is at {bound} with {current} members")
    return Plan(True, f"team size {current} -> {target}", current, target)


@dataclass(frozen=True)
class DefaultPolicy:
    name: str
    description: str
    condition: Condition
    action: Action
    cooldown_seconds: float


# Spec §4.3 "Self-Healing Actions", plus the way back of autoscaling (shrink an idle team).
DEFAULT_POLICIES = (
    DefaultPolicy(
        "restart-stuck-agents",
        "An agent that shows no activity for 5 minutes is stuck: restart it (kill and respawn)",
        Condition("godel_agent_idle_seconds", Operator.GT, 300),
        Action(ActionType.RESTART, "{agent_id}"),
        600,
    ),
    DefaultPolicy(
        "scale-up-on-backlog",
        "More than 1000 tasks wait in a team's queue: add a member (autoscaling teams)",
        Condition("godel_queue_depth", Operator.GT, 1000),
        Action(ActionType.SCALE_UP, "{team_id}", delta=1),
        60,
    ),
    DefaultPolicy(
        "scale-down-when-idle",
        "No task waits in a team's queue: remove a member (autoscaling teams, down to minAgents)",
        Condition("godel_queue_depth", Operator.LT, 1),
        Action(ActionType.SCALE_DOWN, "{team_id}", delta=1),
        300,
    ),
    DefaultPolicy(
        "failover-unhealthy-cluster",
        "A cluster's health score is below 50: drain it, so requests go to healthy clusters",
        Condition("godel_cluster_health_score", Operator.LT, 50),
        Action(ActionType.FAILOVER, "{cluster}"),
        300,
    ),
    DefaultPolicy(
        "rebalance-on-memory-pressure",
        "More than 90% of a host's memory is in use: redistribute agents",
        Condition("godel_memory_usage_ratio", Operator.GT, 0.9),
        Action(ActionType.REBALANCE),
        300,
    ),
)
