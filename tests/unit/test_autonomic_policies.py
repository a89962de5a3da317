"""Autonomic decisions without storage or network (spec §4.3): which policies trigger on a snapshot,
the firing alerts or the clock; targets filled from the trigger's labels; cooldowns per policy and
target; autoscaling within a team's bounds; five-field cron schedules; the self-healing defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from godel.v1 import team_pb2
from godel_server.cluster.alerts.kinds import Severity
from godel_server.cluster.alerts.rules import Rule, Tracked
from godel_server.cluster.autonomic.cron import Cron, CronError
from godel_server.cluster.autonomic.policies import (
    DEFAULT_POLICIES,
    Action,
    ActionType,
    AlertTrigger,
    MetricTrigger,
    Plan,
    Policy,
    Readiness,
    ScheduleTrigger,
    assess,
    fill,
    plan_scale,
    propose,
)
from godel_server.cluster.snapshot import Condition, Operator, Sample, Snapshot

NOW = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)  # a Tuesday
BEFORE = NOW - timedelta(seconds=1)


def backlog(*depths: tuple[str, float]) -> Snapshot:
    return Snapshot(
        tuple(Sample("godel_queue_depth", {"service": "team", "team_id": t}, v) for t, v in depths),
        frozenset({"team"}),
    )


SCALE_UP = Policy(
    "p1",
    "scale-up",
    MetricTrigger(Condition("godel_queue_depth", Operator.GT, 1000)),
    Action(ActionType.SCALE_UP, "{team_id}"),
    60,
)


def test_a_metric_trigger_proposes_one_action_per_target_with_its_reason() -> None:
    proposals = propose([SCALE_UP], backlog(("a", 1200), ("b", 5), ("c", 2000)), [], BEFORE, NOW)
    assert [(p.action.target, p.hit.value) for p in proposals] == [("a", 1200), ("c", 2000)]
    assert proposals[0].hit.reason == 'godel_queue_depth{service="team",team_id="a"} = 1200 > 1000'
    assert proposals[0].key == ("p1", "a")


def test_a_series_without_the_target_label_proposes_nothing() -> None:
    unlabelled = Snapshot((Sample("godel_queue_depth", {"service": "team"}, 5000),), frozenset({"team"}))
    assert propose([SCALE_UP], unlabelled, [], BEFORE, NOW) == []
    assert fill("{team_id}", {}) is None and fill("{team_id}", {"team_id": ""}) is None
    assert fill("team {team_id} on {cluster}", {"team_id": "t", "cluster": "eu"}) == "team t on eu"


def test_an_alert_trigger_proposes_while_its_rule_fires() -> None:
    rule = Rule(
        "r1", "ClusterUnhealthy", Condition("godel_cluster_health_score", Operator.LT, 50), Severity.CRITICAL
    )
    alert = Tracked(rule, {"cluster": "eu-1"}, 20, 0.0, NOW, alert_id="a1")
    failover = Policy(
        "p2", "failover", AlertTrigger("ClusterUnhealthy"), Action(ActionType.FAILOVER, "{cluster}"), 300
    )
    (proposal,) = propose([failover], Snapshot(), [alert], BEFORE, NOW)
    assert proposal.action.target == "eu-1" and "ClusterUnhealthy" in proposal.hit.reason
    by_id = Policy("p3", "by-id", AlertTrigger("r1"), Action(ActionType.FAILOVER, "{cluster}"), 300)
    assert len(propose([by_id], Snapshot(), [alert], BEFORE, NOW)) == 1
    other = Policy("p4", "other", AlertTrigger("QueueBacklog"), Action(ActionType.FAILOVER, "{cluster}"), 300)
    assert propose([other], Snapshot(), [alert], BEFORE, NOW) == []


def test_a_schedule_trigger_proposes_once_for_the_minute_it_names() -> None:
    notify = Policy(
        "p5",
        "daily",
        ScheduleTrigger(Cron.parse("0 12 * * *"), "0 12 * * *"),
        Action(ActionType.NOTIFY, channel="events", message="hello"),
        0,
    )
    (proposal,) = propose([notify], Snapshot(), [], NOW - timedelta(minutes=1), NOW)
    assert "2026-12-01 12:00 UTC" in proposal.hit.reason and proposal.action.message == "hello"
    assert propose([notify], Snapshot(), [], NOW, NOW + timedelta(seconds=30)) == []  # 12:00 already passed


def test_cooldowns_hold_per_policy_and_target() -> None:
    (proposal,) = propose([SCALE_UP], backlog(("a", 1200)), [], BEFORE, NOW)
    ready = Plan(True, "team size 1 -> 2", 1, 2)
    assert assess(proposal, ready, None, NOW).readiness == Readiness.READY
    cooling = assess(proposal, ready, NOW - timedelta(seconds=59), NOW)
    assert cooling.readiness == Readiness.COOLING_DOWN and cooling.not_before == NOW + timedelta(seconds=1)
    assert assess(proposal, ready, NOW - timedelta(seconds=60), NOW).readiness == Readiness.READY
    assert assess(proposal, Plan(False, "at maxAgents"), None, NOW).readiness == Readiness.HELD


def team(size: int, *, auto: bool = True, low: int = 0, high: int = 3) -> team_pb2.Team:
    return team_pb2.Team(
        id="t",
        status=team_pb2.TEAM_STATUS_ACTIVE,
        config=team_pb2.TeamConfig(size=size, auto_scale=auto, min_agents=low, max_agents=high),
    )


def test_autoscaling_stays_within_the_team_bounds() -> None:
    up, down = Action(ActionType.SCALE_UP, "t", delta=2), Action(ActionType.SCALE_DOWN, "t")
    assert plan_scale(up, team(1)) == Plan(True, "team size 1 -> 3", 1, 3)
    assert plan_scale(up, team(2)).target_size == 3  # capped at maxAgents
    assert not plan_scale(up, team(3)).ready and "maxAgents (3)" in plan_scale(up, team(3)).note
    assert plan_scale(down, team(3, low=2)) == Plan(True, "team size 3 -> 2", 3, 2)
    assert not plan_scale(down, team(2, low=2)).ready
    assert not plan_scale(down, team(1)).ready  # never below one member
    assert "autoScale is off" in plan_scale(up, team(1, auto=False)).note
    assert "no maxAgents" in plan_scale(up, team(1, high=0)).note
    paused = team(1)
    paused.status = team_pb2.TEAM_STATUS_PAUSED
    assert not plan_scale(up, paused).ready


def test_cron_expressions() -> None:
    weekdays = Cron.parse("*/15 9-17 * * 1-5")
    assert weekdays.matches(datetime(2026, 12, 1, 9, 45, tzinfo=UTC))  # Tuesday
    assert not weekdays.matches(datetime(2026, 12, 6, 9, 45, tzinfo=UTC))  # Sunday
    assert not weekdays.matches(datetime(2026, 12, 1, 9, 50, tzinfo=UTC))
    sundays = Cron.parse("0 0 * * 7")
    assert sundays.matches(datetime(2026, 12, 6, 0, 0, tzinfo=UTC))
    either = Cron.parse("0 0 1 * 0")  # both day fields restricted: either matches
    assert either.matches(datetime(2026, 12, 1, 0, 0, tzinfo=UTC)) and either.matches(
        datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    )
    hourly = Cron.parse("5 * * * *")
    assert hourly.fired(
        datetime(2026, 12, 1, 11, 59, tzinfo=UTC), datetime(2026, 12, 1, 12, 10, tzinfo=UTC)
    ) == datetime(2026, 12, 1, 12, 5, tzinfo=UTC)
    assert (
        hourly.fired(datetime(2026, 12, 1, 12, 5, tzinfo=UTC), datetime(2026, 12, 1, 12, 10, tzinfo=UTC))
        is None
    )


@pytest.mark.parametrize(
    "text", ["* * * *", "60 * * * *", "* 24 * * *", "x * * * *", "*/0 * * * *", "5-1 * * * *"]
)
def test_bad_cron_expressions_are_refused(text: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(text)


def test_the_spec_self_healing_defaults() -> None:
    by_name = {p.name: p for p in DEFAULT_POLICIES}
    stuck = by_name["restart-stuck-agents"]
    assert stuck.condition == Condition("godel_agent_idle_seconds", Operator.GT, 300)
    assert stuck.action == Action(ActionType.RESTART, "{agent_id}")
    assert by_name["scale-up-on-backlog"].condition == Condition("godel_queue_depth", Operator.GT, 1000)
    assert by_name["failover-unhealthy-cluster"].condition == Condition(
        "godel_cluster_health_score", Operator.LT, 50
    )
    assert by_name["failover-unhealthy-cluster"].action.type == ActionType.FAILOVER
    assert by_name["rebalance-on-memory-pressure"].condition == Condition(
        "godel_memory_usage_ratio", Operator.GT, 0.9
    )
