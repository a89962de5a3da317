"""Alert rule evaluation (spec §4.3 AlertManager.evaluate), without storage or clocks of its own:
each rule is evaluated every `interval` on a Snapshot; every series for which its condition holds
is an alert, pending until the condition has held for `for`, then firing until it no longer holds
(or the series is gone, or the rule is disabled or deleted), then resolved. Silences match alerts
by their labels. The spec's three default rules are here too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from godel_server.cluster.alerts.kinds import AlertState, Severity
from godel_server.cluster.collector import FAILURE_RATE
from godel_server.cluster.snapshot import SYMBOL, Condition, Operator, Snapshot, fingerprint, series_name
from godel_server.runtime.ids import new_id

ALERTNAME = "alertname"
SEVERITY_LABEL = "severity"


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    condition: Condition
    severity: Severity
    for_seconds: float = 0.0
    interval_seconds: float = 0.0
    channels: tuple[str, ...] = ()


@dataclass
class Tracked:
    """One series of a rule whose condition holds (pending), or held long enough (firing)."""

    rule: Rule
    series: Mapping[str, str]
    value: float
    # When the condition began to hold: monotonic (for `for`) and wall time (for the API).
    since: float
    active_at: datetime
    # The stored alert's id, once firing.
    alert_id: str | None = None

    @property
    def firing(self) -> bool:
        return self.alert_id is not None

    @property
    def labels(self) -> dict[str, str]:
        """The alert's labels: the series' labels with the rule's name and severity."""
        return {**self.series, ALERTNAME: self.rule.name, SEVERITY_LABEL: self.rule.severity.value}


@dataclass(frozen=True)
class Change:
    """An alert that began to fire or resolved at this evaluation."""

    state: AlertState
    alert: Tracked
    summary: str


def _fired(rule: Rule, t: Tracked) -> str:
    c = rule.condition
    held = f" for {rule.for_seconds:g}s" if rule.for_seconds else ""
    return f"{series_name(c.metric, t.series)} = {t.value:g} {SYMBOL[c.operator]} {c.threshold:g}{held}"


class AlertEvaluator:
    def __init__(self) -> None:
        self._tracked: dict[tuple[str, str], Tracked] = {}
        self._evaluated: dict[str, float] = {}

    def restore(self, alert: Tracked) -> None:
        """Tracks an alert that was firing when the evaluation stopped (e.g. a restart)."""
        self._tracked[(alert.rule.id, fingerprint(alert.series))] = alert

    def firing(self) -> list[Tracked]:
        return [t for t in self._tracked.values() if t.firing]

    def pending(self) -> list[Tracked]:
        return [t for t in self._tracked.values() if not t.firing]

    def evaluate(self, rules: Sequence[Rule], snapshot: Snapshot, now: float, wall: datetime) -> list[Change]:
        """Evaluates the (enabled) rules that are due at monotonic time `now`."""
        changes: list[Change] = []
        ids = {rule.id for rule in rules}
        for key, t in list(self._tracked.items()):
            if key[0] not in ids:
                del self._tracked[key]
                if t.firing:
                    changes.append(
                        Change(AlertState.RESOLVED, t, f"rule {t.rule.name} was disabled or deleted")
                    )
        for gone in set(self._evaluated) - ids:
            del self._evaluated[gone]
        for rule in rules:
            last = self._evaluated.get(rule.id)
            if last is None or now - last >= rule.interval_seconds:
                self._evaluated[rule.id] = now
                changes.extend(self._evaluate(rule, snapshot, now, wall))
        return changes

    def _evaluate(self, rule: Rule, snapshot: Snapshot, now: float, wall: datetime) -> list[Change]:
        changes: list[Change] = []
        holding = {fingerprint(s.labels): s for s in rule.condition.holding(snapshot)}
        for fp, sample in holding.items():
            t = self._tracked.setdefault(
                (rule.id, fp), Tracked(rule, dict(sample.labels), sample.value, now, wall)
            )
            t.rule, t.value = rule, sample.value
            if not t.firing and now - t.since >= rule.for_seconds:
                t.alert_id = new_id()
                changes.append(Change(AlertState.FIRING, t, _fired(rule, t)))
        for (rule_id, fp), t in list(self._tracked.items()):
            if rule_id != rule.id or fp in holding or not snapshot.covers(t.series):
                continue  # a series of a service that did not answer is unknown, not gone
            del self._tracked[(rule_id, fp)]
            if t.firing:
                current = snapshot.series(rule.condition.metric, t.series)
                why = f"now {current[0].value:g}" if current else "the series is gone"
                c = rule.condition
                changes.append(
                    Change(
                        AlertState.RESOLVED,
                        t,
                        f"{series_name(c.metric, t.series)} no longer {SYMBOL[c.operator]} {c.threshold:g} ({why})",
                    )
                )
        return changes


@dataclass(frozen=True)
class SilenceWindow:
    id: str
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(self, labels: Mapping[str, str], at: datetime) -> bool:
        return self.active(at) and all(labels.get(k) == v for k, v in self.matchers.items())


def silenced_by(silences: Iterable[SilenceWindow], labels: Mapping[str, str], at: datetime) -> list[str]:
    return [s.id for s in silences if s.matches(labels, at)]


@dataclass(frozen=True)
class DefaultRule:
    """A rule the cluster service creates at its first start (spec §4.3 "Default Alert Rules")."""

    name: str
    description: str
    condition: Condition
    severity: Severity
    for_seconds: float
    channels: tuple[str, ...] = ()


DEFAULT_RULES = (
    DefaultRule(
        "HighAgentFailureRate",
        "More than 10% of the agent runs that ended in the last 5 minutes failed",
        Condition(FAILURE_RATE, Operator.GT, 0.1),
        Severity.WARNING,
        300,
    ),
    DefaultRule(
        "QueueBacklog",
        "More than 1000 tasks wait in a team's queue",
        Condition("godel_queue_depth", Operator.GT, 1000),
        Severity.CRITICAL,
        60,
    ),
    DefaultRule(
        "ClusterUnhealthy",
        "A cluster's health score is below 50",
        Condition("godel_cluster_health_score", Operator.LT, 50),
        Severity.CRITICAL,
        120,
    ),
)
