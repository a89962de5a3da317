"""Alert rule evaluation on snapshots made by hand (spec §4.3): an alert is pending until its
condition has held for the rule's `for`, then fires once, and resolves when the condition no longer
holds or its series is gone, but not while the service that exports the series is silent; rules
are evaluated at their interval; silences match by labels while in force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from godel_server.cluster.alerts.kinds import AlertState, Severity
from godel_server.cluster.alerts.rules import DEFAULT_RULES, AlertEvaluator, Rule, SilenceWindow, silenced_by
from godel_server.cluster.snapshot import Condition, Operator, Sample, Snapshot, parse

WALL = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T0 = 1000.0  # a monotonic clock that does not start at zero


def depth(value: float, team: str = "t1", *, answered: bool = True) -> Snapshot:
    labels = {"service": "team", "team_id": team}
    return Snapshot((Sample("godel_queue_depth", labels, value),), frozenset({"team"} if answered else ()))


RULE = Rule(
    "r1",
    "Backlog",
    Condition("godel_queue_depth", Operator.GT, 10, {"team_id": "t1"}),
    Severity.CRITICAL,
    for_seconds=60,
)


def test_an_alert_fires_only_after_its_for_duration_and_once() -> None:
    ev = AlertEvaluator()
    assert ev.evaluate([RULE], depth(50), T0, WALL) == []
    assert [t.value for t in ev.pending()] == [50]
    assert ev.evaluate([RULE], depth(60), T0 + 59.9, WALL) == []
    (fired,) = ev.evaluate([RULE], depth(70), T0 + 60, WALL)
    assert fired.state == AlertState.FIRING
    assert fired.alert.labels == {
        "service": "team",
        "team_id": "t1",
        "alertname": "Backlog",
        "severity": "critical",
    }
    assert fired.summary == 'godel_queue_depth{service="team",team_id="t1"} = 70 > 10 for 60s'
    assert fired.alert.active_at == WALL
    assert ev.evaluate([RULE], depth(80), T0 + 61, WALL) == []  # still firing: no second change
    assert len(ev.firing()) == 1


def test_a_condition_that_stops_holding_before_for_never_fires() -> None:
    ev = AlertEvaluator()
    ev.evaluate([RULE], depth(50), T0, WALL)
    assert ev.evaluate([RULE], depth(5), T0 + 30, WALL) == []
    assert not ev.pending() and not ev.firing()
    assert ev.evaluate([RULE], depth(50), T0 + 61, WALL) == []  # the `for` starts again


def test_a_firing_alert_resolves_when_the_condition_stops_holding_or_the_series_goes() -> None:
    ev = AlertEvaluator()
    instant = Rule("r2", "Any", Condition("godel_queue_depth", Operator.GT, 10), Severity.WARNING)
    ev.evaluate([instant], depth(50), T0, WALL)
    (resolved,) = ev.evaluate([instant], depth(3), T0 + 1, WALL)
    assert resolved.state == AlertState.RESOLVED and "(now 3)" in resolved.summary
    ev.evaluate([instant], depth(50), T0 + 2, WALL)
    (gone,) = ev.evaluate([instant], Snapshot((), frozenset({"team"})), T0 + 3, WALL)
    assert gone.state == AlertState.RESOLVED and "the series is gone" in gone.summary


def test_a_silent_service_does_not_resolve_its_alerts() -> None:
    ev = AlertEvaluator()
    instant = Rule("r2", "Any", Condition("godel_queue_depth", Operator.GT, 10), Severity.WARNING)
    ev.evaluate([instant], depth(50), T0, WALL)
    assert ev.evaluate([instant], Snapshot(), T0 + 1, WALL) == []
    assert len(ev.firing()) == 1


def test_a_deleted_rule_resolves_its_alerts_and_rules_wait_for_their_interval() -> None:
    ev = AlertEvaluator()
    slow = Rule(
        "r3", "Slow", Condition("godel_queue_depth", Operator.GT, 10), Severity.INFO, interval_seconds=30
    )
    assert [c.state for c in ev.evaluate([slow], depth(50), T0, WALL)] == [AlertState.FIRING]
    assert ev.evaluate([slow], depth(0), T0 + 29, WALL) == []  # not due yet
    (resolved,) = ev.evaluate([slow], depth(0), T0 + 30, WALL)
    assert resolved.state == AlertState.RESOLVED
    ev.evaluate([slow], depth(50), T0 + 60, WALL)
    (dropped,) = ev.evaluate([], depth(50), T0 + 61, WALL)
    assert dropped.state == AlertState.RESOLVED and "disabled or deleted" in dropped.summary


def test_each_series_is_its_own_alert() -> None:
    ev = AlertEvaluator()
    any_team = Rule("r4", "Any", Condition("godel_queue_depth", Operator.GT, 10), Severity.WARNING)
    both = Snapshot(
        (
            Sample("godel_queue_depth", {"service": "team", "team_id": "a"}, 20),
            Sample("godel_queue_depth", {"service": "team", "team_id": "b"}, 30),
            Sample("godel_queue_depth", {"service": "team", "team_id": "c"}, 1),
        ),
        frozenset({"team"}),
    )
    changes = ev.evaluate([any_team], both, T0, WALL)
    assert sorted(c.alert.series["team_id"] for c in changes) == ["a", "b"]


def test_silences_match_by_labels_while_in_force() -> None:
    window = SilenceWindow("s1", {"alertname": "Backlog"}, WALL, WALL + timedelta(hours=1))
    labels = {"alertname": "Backlog", "team_id": "t1"}
    assert silenced_by([window], labels, WALL) == ["s1"]
    assert silenced_by([window], labels, WALL + timedelta(hours=1)) == []  # ended
    assert silenced_by([window], labels, WALL - timedelta(seconds=1)) == []  # not begun
    assert silenced_by([window], {"alertname": "Other"}, WALL) == []


def test_the_spec_default_rules() -> None:
    rules = {r.name: r for r in DEFAULT_RULES}
    assert (
        rules["HighAgentFailureRate"].condition.threshold == 0.1
        and rules["HighAgentFailureRate"].for_seconds == 300
    )
    assert rules["QueueBacklog"].condition == Condition("godel_queue_depth", Operator.GT, 1000)
    assert rules["QueueBacklog"].for_seconds == 60
    assert rules["ClusterUnhealthy"].condition == Condition("godel_cluster_health_score", Operator.LT, 50)
    assert rules["ClusterUnhealthy"].for_seconds == 120


def test_a_snapshot_of_expositions_labels_each_sample_with_its_service() -> None:
    text = '# TYPE godel_queue_depth gauge\ngodel_queue_depth{team_id="t1"} 3.0\n'
    snap = parse({"team": text, "agent": ""})
    assert snap.series("godel_queue_depth") == [
        Sample("godel_queue_depth", {"team_id": "t1", "service": "team"}, 3.0)
    ]
    assert snap.answered == frozenset({"team"})
    assert snap.covers({"service": "team"}) and not snap.covers({"service": "agent"}) and snap.covers({})
