"""The load balancer's choices over a fixed set of clusters (spec §4.2 MultiClusterLoadBalancer):
requirement filters, session affinity, prefer-local, and each of the five strategies, with seeded
randomness so every choice is checked exactly."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from godel_server.cluster.balancer import (
    Candidate,
    LoadBalancer,
    NoEligibleClusterError,
    RouteQuery,
    eligible,
    proximity,
)
from godel_server.runtime.statuses import ClusterStatus
from godel_server.runtime.statuses import LoadBalanceStrategy as S

CLUSTERS = [
    Candidate("id-a", "a", "eu-west-1", score=90, current_agents=8, max_agents=10, latency_ms=50,
              features=frozenset({"gpu"}), models=frozenset({"m1", "m2"}), local=True),
    Candidate("id-b", "b", "eu-west-2", score=60, current_agents=2, max_agents=10, latency_ms=10,
              features=frozenset({"gpu", "docker"})),
    Candidate("id-c", "c", "us-east-1", score=30, current_agents=2, max_agents=20, latency_ms=200,
              models=frozenset({"m2"})),
    Candidate("id-d", "d", "eu-central-1", status=ClusterStatus.OFFLINE, score=100, max_agents=50),
]  # fmt: skip


def names(clusters: list[Candidate]) -> list[str]:
    return [c.name for c in clusters]


def test_requirement_filters() -> None:
    assert names(eligible(CLUSTERS, RouteQuery())) == ["a", "b", "c"]  # d is offline
    assert names(eligible(CLUSTERS, RouteQuery(region="eu-west-2", require_region=True))) == ["b"]
    assert names(eligible(CLUSTERS, RouteQuery(model="m1"))) == ["a", "b"]  # b lists no models: any
    assert names(eligible(CLUSTERS, RouteQuery(features=("gpu", "docker")))) == ["b"]
    assert names(eligible(CLUSTERS, RouteQuery(min_capacity=9))) == ["c"]
    assert names(eligible(CLUSTERS, RouteQuery(exclude=frozenset({"a", "id-b"})))) == ["c"]
    with pytest.raises(NoEligibleClusterError, match=r"a: region eu-west-1.*d: offline"):
        LoadBalancer(S.HEALTH_SCORE).route(CLUSTERS, RouteQuery(region="ap-south-1", require_region=True))


def test_round_robin_takes_each_in_turn() -> None:
    lb = LoadBalancer(S.ROUND_ROBIN)
    chosen = [lb.route(CLUSTERS, RouteQuery()).cluster.name for _ in range(7)]
    assert chosen == ["a", "b", "c", "a", "b", "c", "a"]


def test_least_connections_takes_the_fewest_agents_then_the_lowest_load() -> None:
    decision = LoadBalancer(S.LEAST_CONNECTIONS).route(CLUSTERS, RouteQuery())
    assert decision.cluster.name == "c"  # 2 agents like b, but 2/20 < 2/10
    assert decision.strategy == S.LEAST_CONNECTIONS and decision.eligible == ("a", "b", "c")


def test_health_score_is_the_specs_weighted_random() -> None:
    lb = LoadBalancer(S.HEALTH_SCORE, random.Random(7))
    counts = Counter(lb.route(CLUSTERS, RouteQuery()).cluster.name for _ in range(1800))
    # Weights 90 : 60 : 30 of 180.
    assert abs(counts["a"] - 900) < 90 and abs(counts["b"] - 600) < 80 and abs(counts["c"] - 300) < 60, counts
    again = LoadBalancer(S.HEALTH_SCORE, random.Random(7))
    first = [again.route(CLUSTERS, RouteQuery()).cluster.name for _ in range(5)]
    replay = LoadBalancer(S.HEALTH_SCORE, random.Random(7))
    assert [replay.route(CLUSTERS, RouteQuery()).cluster.name for _ in range(5)] == first


def test_weighted_response_time_favours_the_fastest() -> None:
    lb = LoadBalancer(S.WEIGHTED_RESPONSE_TIME, random.Random(3))
    counts = Counter(lb.route(CLUSTERS, RouteQuery()).cluster.name for _ in range(1000))
    # Weights 1/50 : 1/10 : 1/200 -> a 0.1533, b 0.7666, c 0.0383 of 1000.
    assert counts["b"] > 700 and 100 < counts["a"] < 210 and counts["c"] < 70, counts


def test_geographic_takes_the_nearest_region() -> None:
    lb = LoadBalancer(S.GEOGRAPHIC)
    assert lb.route(CLUSTERS, RouteQuery(region="eu-west-2")).cluster.name == "b"
    assert lb.route(CLUSTERS, RouteQuery(region="eu-west-9")).cluster.name == "a"  # eu-west, better score
    assert lb.route(CLUSTERS, RouteQuery(region="us-west-1")).cluster.name == "c"
    # No region asked: this registry's own (a, eu-west-1) is the reference.
    assert lb.route(CLUSTERS, RouteQuery(exclude=frozenset({"a"}))).cluster.name == "b"
    assert proximity("eu-west-1", "eu-west-2") == 2 and proximity("eu-west-1", "us-east-1") == 0


def test_prefer_local_and_session_affinity() -> None:
    lb = LoadBalancer(S.LEAST_CONNECTIONS)
    local = lb.route(CLUSTERS, RouteQuery(prefer_local=True))
    assert local.cluster.name == "a" and local.strategy is None
    # The local cluster does not meet the request: the strategy chooses among the others.
    assert lb.route(CLUSTERS, RouteQuery(prefer_local=True, model="m2", min_capacity=5)).cluster.name == "c"
    bound = lb.route(CLUSTERS, RouteQuery(session_id="s1"), bound_to="id-b")
    assert bound.cluster.name == "b" and bound.affinity
    # A binding to a cluster that is not eligible (offline d) does not hold.
    assert lb.route(CLUSTERS, RouteQuery(session_id="s1"), bound_to="id-d").cluster.name == "c"
