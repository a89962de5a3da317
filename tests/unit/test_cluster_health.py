"""The registry's health score (spec §4.2 calculateHealthScore) from its own observations, and the
status a cluster's heartbeat age and score give it."""

from __future__ import annotations

from godel_server.cluster.scoring import (
    HealthFactors,
    Probe,
    Timeouts,
    factors,
    freshness,
    health_score,
    probe_factors,
    status_for,
)
from godel_server.runtime.statuses import ClusterStatus

T = Timeouts(heartbeat=10, degraded_after=30, offline_after=60)


def test_the_spec_formula_weights_each_factor() -> None:
    perfect = HealthFactors(connectivity=1, latency_ms=0, error_rate=0, capacity=1, freshness=1)
    assert health_score(perfect, 1000) == 100
    assert health_score(HealthFactors(0, 0, 0, 1, 1), 1000) == 75  # connectivity 0.25
    assert health_score(HealthFactors(1, 1000, 0, 1, 1), 1000) == 80  # latency 0.20
    assert health_score(HealthFactors(1, 5000, 0, 1, 1), 1000) == 80  # beyond the maximum: still 0.20
    assert health_score(HealthFactors(1, 0, 1, 1, 1), 1000) == 75  # error rate 0.25
    assert health_score(HealthFactors(1, 0, 0, 0, 1), 1000) == 80  # capacity 0.20
    assert health_score(HealthFactors(1, 0, 0, 1, 0), 1000) == 90  # freshness 0.10
    assert health_score(HealthFactors(1, 500, 0.5, 0.5, 1), 1000) == 68  # 25 + 10 + 12.5 + 10 + 10


def test_the_score_falls_as_probe_latency_grows() -> None:
    def score(latency: float) -> int:
        probes = [Probe(reached=True, ok=True, latency_ms=latency)] * 3
        f = factors(probes, current_agents=0, max_agents=10, heartbeat_age=0, timeouts=T, max_latency_ms=1000)
        return health_score(f, 1000)

    scores = [score(ms) for ms in (1, 200, 500, 900)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4, scores


def test_probe_factors_separate_unreachable_from_unhealthy() -> None:
    assert probe_factors([], 1000) == (1.0, 0.0, 0.0)  # not probed yet: assume the best
    window = [
        Probe(reached=True, ok=True, latency_ms=10),
        Probe(reached=True, ok=False, latency_ms=30, error="HEALTH_STATUS_DEGRADED"),
        Probe(reached=False, ok=False, latency_ms=2000, error="UNAVAILABLE"),
        Probe(reached=False, ok=False, latency_ms=2000, error="UNAVAILABLE"),
    ]
    connectivity, latency, error_rate = probe_factors(window, 1000)
    assert (connectivity, latency, error_rate) == (0.5, 20.0, 0.5)
    assert probe_factors(window[2:], 1000) == (0.0, 1000, 1.0)  # nothing answers: all errors


def test_freshness_falls_from_one_interval_to_the_offline_timeout() -> None:
    assert freshness(0, T) == freshness(10, T) == 1.0
    assert freshness(35, T) == 0.5
    assert freshness(60, T) == freshness(600, T) == 0.0


def test_a_silent_cluster_goes_degraded_then_offline() -> None:
    online = ClusterStatus.ONLINE
    assert status_for(online, 5, 90, T) == ClusterStatus.ONLINE
    assert status_for(online, 31, 90, T) == ClusterStatus.DEGRADED
    assert status_for(online, 61, 90, T) == ClusterStatus.OFFLINE
    assert status_for(online, 5, 49, T) == ClusterStatus.DEGRADED  # heartbeating but unhealthy
    assert status_for(ClusterStatus.OFFLINE, 1, 90, T) == ClusterStatus.ONLINE  # it came back
    assert status_for(ClusterStatus.DRAINING, 31, 90, T) == ClusterStatus.DRAINING
    assert status_for(ClusterStatus.DRAINING, 5, 49, T) == ClusterStatus.DRAINING  # still unhealthy
    assert status_for(ClusterStatus.DRAINING, 5, 50, T) == ClusterStatus.ONLINE  # healthy again
    assert status_for(ClusterStatus.DRAINING, 61, 90, T) == ClusterStatus.OFFLINE
