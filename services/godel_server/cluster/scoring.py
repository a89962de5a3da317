"""A cluster's health as the registry sees it (spec §4.2 HealthFactors, calculateHealthScore): the
factors come from what the registry observes itself (its probes of the cluster's gateway, the age
of the cluster's last heartbeat, the capacity it reports), never from a score the cluster sends;
and the status follows from the heartbeat's age and the score. Pure: no clock, no I/O."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from godel_server.runtime.statuses import ClusterStatus

# The spec's weights.
WEIGHTS = {"connectivity": 0.25, "latency": 0.20, "error_rate": 0.25, "capacity": 0.20, "freshness": 0.10}
# A cluster scoring below this is degraded even while it heartbeats.
HEALTHY_SCORE = 50
# How many recent probes the factors are computed from.
PROBE_WINDOW = 10


@dataclass(frozen=True)
class Probe:
    """One probe of a cluster's gateway: did it answer, was the answer healthy, how fast."""

    reached: bool
    ok: bool
    latency_ms: float
    error: str = ""


@dataclass(frozen=True)
class HealthFactors:
    connectivity: float
    latency_ms: float
    error_rate: float
    capacity: float
    freshness: float
    probes: int = 0


@dataclass(frozen=True)
class Timeouts:
    """Heartbeat interval and the silences after which a cluster is degraded, then offline (s)."""

    heartbeat: float
    degraded_after: float
    offline_after: float


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


def health_score(f: HealthFactors, max_latency_ms: float) -> int:
    """0-100 by the spec's formula; a latency at or over `max_latency_ms` scores 0 for latency."""
    raw = (
        f.connectivity * WEIGHTS["connectivity"]
        + (1 - _clamp(f.latency_ms / max_latency_ms)) * WEIGHTS["latency"]
        + (1 - f.error_rate) * WEIGHTS["error_rate"]
        + f.capacity * WEIGHTS["capacity"]
        + f.freshness * WEIGHTS["freshness"]
    )
    return round(_clamp(raw) * 100)


def free_capacity(current_agents: int, max_agents: int) -> float:
    """Free share of the agent slots, 0-1; a cluster that reports no slots has none free."""
    if max_agents <= 0:
        return 0.0
    return _clamp((max_agents - current_agents) / max_agents)


def freshness(age_seconds: float, t: Timeouts) -> float:
    """1 while the last heartbeat is at most one interval old, falling linearly to 0 at offline_after."""
    if age_seconds <= t.heartbeat:
        return 1.0
    if t.offline_after <= t.heartbeat:
        return 0.0
    return _clamp(1 - (age_seconds - t.heartbeat) / (t.offline_after - t.heartbeat))


def probe_factors(probes: Iterable[Probe], max_latency_ms: float) -> tuple[float, float, float]:
    """Connectivity, mean latency (ms) and error rate of the probes. Before the first probe the
    registry assumes the best (a new cluster is not punished for not having been probed yet); when
    no probe got an answer, latency is the maximum and every probe counts as an error."""
    window = list(probes)
    if not window:
        return 1.0, 0.0, 0.0
    reached = [p for p in window if p.reached]
    if not reached:
        return 0.0, max_latency_ms, 1.0
    connectivity = len(reached) / len(window)
    latency = sum(p.latency_ms for p in reached) / len(reached)
    error_rate = sum(1 for p in reached if not p.ok) / len(reached)
    return connectivity, latency, error_rate


def status_for(current: ClusterStatus, age_seconds: float, score: int, t: Timeouts) -> ClusterStatus:
    """Offline after `offline_after` without a heartbeat; degraded after `degraded_after`, or while
    the score is below HEALTHY_SCORE; else online. A draining cluster (the autonomic loop's failover
    drains an unhealthy one) stays draining while it is unhealthy, and is online again once it is
    healthy: a passing dip (a slow probe, a cluster still starting) must not drain it for good."""
    if age_seconds > t.offline_after:
        return ClusterStatus.OFFLINE
    if age_seconds > t.degraded_after or score < HEALTHY_SCORE:
        return ClusterStatus.DRAINING if current == ClusterStatus.DRAINING else ClusterStatus.DEGRADED
    return ClusterStatus.ONLINE


class ProbeWindow:
    """The most recent PROBE_WINDOW probes of one cluster, and when the last one was made."""

    def __init__(self, size: int = PROBE_WINDOW) -> None:
        self._probes: deque[Probe] = deque(maxlen=size)
        self.last_time: datetime | None = None

    def add(self, probe: Probe, at: datetime) -> None:
        self._probes.append(probe)
        self.last_time = at

    @property
    def probes(self) -> list[Probe]:
        return list(self._probes)

    @property
    def last(self) -> Probe | None:
        return self._probes[-1] if self._probes else None


def factors(
    probes: Iterable[Probe],
    *,
    current_agents: int,
    max_agents: int,
    heartbeat_age: float,
    timeouts: Timeouts,
    max_latency_ms: float,
) -> HealthFactors:
    window = list(probes)
    connectivity, latency, error_rate = probe_factors(window, max_latency_ms)
    return HealthFactors(
        connectivity=connectivity,
        latency_ms=latency,
        error_rate=error_rate,
        capacity=free_capacity(current_agents, max_agents),
        freshness=freshness(heartbeat_age, timeouts),
        probes=len(window),
    )
