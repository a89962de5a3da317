"""What the autonomic loop sees of the mesh at one moment (spec §4.3 MetricsCollector.collect): the
samples of every service's /metrics, each with a `service` label, plus the figures the cluster
service derives from their history, and the conditions that alert rules and policies put on them
("godel_queue_depth > 1000"). Plain data: the rules and policies are tested on snapshots made by
hand."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from godel.v1 import alert_pb2
from godel_server.runtime.enums import ProtoEnum

SERVICE_LABEL = "service"
K = TypeVar("K", bound=str)


class Operator(StrEnum):
    GT = "gt"
    LT = "lt"
    EQ = "eq"
    NE = "ne"


OPERATOR = ProtoEnum(alert_pb2.ComparisonOperator, Operator)
SYMBOL = {Operator.GT: ">", Operator.LT: "<", Operator.EQ: "==", Operator.NE: "!="}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float

    def has(self, matchers: Mapping[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in matchers.items())

    def __str__(self) -> str:
        """`godel_queue_depth{service="team",team_id="t1"} = 12`"""
        return f"{series_name(self.name, self.labels)} = {self.value:g}"


def series_name(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


@dataclass(frozen=True)
class Snapshot:
    samples: tuple[Sample, ...] = ()
    # The services whose /metrics answered: the absence of their series means something.
    answered: frozenset[str] = frozenset()

    def series(self, name: str, matchers: Mapping[str, str] | None = None) -> list[Sample]:
        return [s for s in self.samples if s.name == name and s.has(matchers or {})]

    def sum(self, name: str, **matchers: str) -> float:
        return sum(s.value for s in self.series(name, matchers))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.series(name):
            key = s.labels.get(label, "")
            out[key] = out.get(key, 0.0) + s.value
        return out

    def covers(self, labels: Mapping[str, str]) -> bool:
        """Whether this snapshot would show a series with these labels if it still existed (its
        service answered, or it is one the cluster service derives itself)."""
        service = labels.get(SERVICE_LABEL)
        return service is None or service in self.answered


def parse(texts: Mapping[K, str]) -> Snapshot:
    """A snapshot of the expositions of several services (service -> /metrics text, "" for one
    that did not answer)."""
    samples: list[Sample] = []
    for service, text in texts.items():
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.append(Sample(s.name, {**s.labels, SERVICE_LABEL: service}, float(s.value)))
    return Snapshot(tuple(samples), frozenset(service for service, text in texts.items() if text))


@dataclass(frozen=True)
class Condition:
    """A threshold on one metric (spec §4.3 AlertCondition; also a policy's metric trigger)."""

    metric: str
    operator: Operator
    threshold: float
    labels: Mapping[str, str] = field(default_factory=dict)

    def holds(self, value: float) -> bool:
        match self.operator:
            case Operator.GT:
                return value > self.threshold
            case Operator.LT:
                return value < self.threshold
            case Operator.EQ:
                return value == self.threshold
            case Operator.NE:
                return value != self.threshold

    def holding(self, snapshot: Snapshot) -> list[Sample]:
        """The series of the metric (with the condition's labels) for which it holds."""
        return [s for s in snapshot.series(self.metric, self.labels) if self.holds(s.value)]

    def explain(self, sample: Sample) -> str:
        """`godel_queue_depth{team_id="t1"} = 1200 > 1000`"""
        return f"{sample} {SYMBOL[self.operator]} {self.threshold:g}"


def fingerprint(labels: Mapping[str, str]) -> str:
    """One series' identity: its labels, sorted."""
    return json.dumps(sorted(labels.items()), separators=(",", ":"))


def merge(snapshot: Snapshot, extra: Iterable[Sample]) -> Snapshot:
    return Snapshot((*snapshot.samples, *extra), snapshot.answered)
