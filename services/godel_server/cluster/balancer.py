"""Which cluster runs a request (spec §4.2 MultiClusterLoadBalancer): the requirement filters, session
affinity, and the five strategies. Pure: the clusters come in as `Candidate`s, the session's binding
as an argument, randomness from an injected `random.Random`; router.py does the I/O."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from godel_server.runtime.errors import FailedPreconditionError
from godel_server.runtime.statuses import ClusterStatus
from godel_server.runtime.statuses import LoadBalanceStrategy as Strategy

# Clusters that may get work; an offline or draining one never does.
ROUTABLE = frozenset({ClusterStatus.ONLINE, ClusterStatus.DEGRADED})


@dataclass(frozen=True)
class Candidate:
    """A registered cluster as routing sees it."""

    id: str
    name: str
    region: str = ""
    status: ClusterStatus = ClusterStatus.ONLINE
    score: int = 100
    current_agents: int = 0
    max_agents: int = 0
    latency_ms: float = 0.0
    features: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    local: bool = False

    @property
    def free(self) -> int:
        return max(0, self.max_agents - self.current_agents)

    @property
    def load(self) -> float:
        return self.current_agents / self.max_agents if self.max_agents > 0 else 1.0


@dataclass(frozen=True)
class RouteQuery:
    region: str = ""
    require_region: bool = False
    model: str = ""
    features: tuple[str, ...] = ()
    min_capacity: int = 0
    strategy: Strategy | None = None
    session_id: str = ""
    exclude: frozenset[str] = frozenset()
    prefer_local: bool = False


@dataclass(frozen=True)
class Decision:
    cluster: Candidate
    reason: str
    # None when the session's binding or prefer_local chose.
    strategy: Strategy | None = None
    affinity: bool = False
    eligible: tuple[str, ...] = field(default_factory=tuple)


class NoEligibleClusterError(FailedPreconditionError):
    code = "NO_ELIGIBLE_CLUSTER"


def unmet(c: Candidate, q: RouteQuery) -> str | None:
    """Why `c` cannot take the request, or None when it can."""
    if c.id in q.exclude or c.name in q.exclude:
        return "excluded"
    if c.status not in ROUTABLE:
        return str(c.status)
    if q.require_region and c.region != q.region:
        return f"region {c.region or '(none)'}"
    if q.model and c.models and q.model not in c.models:
        return f"no model {q.model}"
    missing = sorted(set(q.features) - c.features)
    if missing:
        return f"no feature {', '.join(missing)}"
    if q.min_capacity > 0 and c.free < q.min_capacity:
        return f"{c.free} free slot(s)"
    return None


def eligible(candidates: Sequence[Candidate], q: RouteQuery) -> list[Candidate]:
    """The candidates that meet every requirement, by name."""
    return sorted((c for c in candidates if unmet(c, q) is None), key=lambda c: c.name)


def proximity(a: str, b: str) -> int:
    """Leading `-`-separated parts two region names share ("eu-west-1", "eu-west-2": 2)."""
    if not a or not b:
        return 0
    if a == b:
        return 1_000
    shared = 0
    for x, y in zip(a.split("-"), b.split("-"), strict=False):
        if x != y:
            break
        shared += 1
    return shared


def weighted(clusters: Sequence[Candidate], weights: Sequence[float], rng: random.Random) -> Candidate:
    """The spec's weighted random choice: a point in [0, total), walked through the weights in order;
    when every weight is 0, the first cluster."""
    total = sum(weights)
    if total <= 0:
        return clusters[0]
    point = rng.random() * total
    for cluster, weight in zip(clusters, weights, strict=True):
        point -= weight
        if point < 0:
            return cluster
    return clusters[-1]


class LoadBalancer:
    """Routes over the clusters it is given. Round-robin keeps its position between calls."""

    def __init__(self, default: Strategy, rng: random.Random | None = None) -> None:
        self.default = default
        self._rng = rng or random.Random()
        self._turn = 0
        self._choosers: dict[Strategy, Callable[[list[Candidate], RouteQuery], Candidate]] = {
            Strategy.ROUND_ROBIN: self._round_robin,
            Strategy.LEAST_CONNECTIONS: self._least_connections,
            Strategy.WEIGHTED_RESPONSE_TIME: self._response_time,
            Strategy.HEALTH_SCORE: self._health_score,
            Strategy.GEOGRAPHIC: self._geographic,
        }

    def route(self, candidates: Sequence[Candidate], q: RouteQuery, bound_to: str | None = None) -> Decision:
        """The cluster for `q`: among the eligible ones, the session's (`bound_to`, an id) if it is one
        of them, else this registry's own with prefer_local, else the strategy's choice."""
        ok = eligible(candidates, q)
        names = tuple(c.name for c in ok)
        if not ok:
            reasons = "; ".join(f"{c.name}: {unmet(c, q)}" for c in sorted(candidates, key=lambda c: c.name))
            raise NoEligibleClusterError(
                f"no cluster meets the request ({reasons or 'no cluster is registered'})"[:2000]
            )
        if bound_to:
            for c in ok:
                if c.id == bound_to:
                    return Decision(
                        c, f"session {q.session_id} is bound to {c.name}", affinity=True, eligible=names
                    )
        if q.prefer_local:
            for c in ok:
                if c.local:
                    return Decision(c, f"{c.name} (this cluster) meets the request", eligible=names)
        strategy = q.strategy or self.default
        if not q.region:
            # The geographic strategy's reference is this registry's own region unless asked otherwise.
            q = replace(q, region=next((c.region for c in candidates if c.local), ""))
        chosen = self._choosers[strategy](ok, q)
        return Decision(
            chosen, f"{strategy} chose {chosen.name} of {len(ok)}", strategy=strategy, eligible=names
        )

    def _round_robin(self, ok: list[Candidate], q: RouteQuery) -> Candidate:
        chosen = ok[self._turn % len(ok)]
        self._turn += 1
        return chosen

    def _least_connections(self, ok: list[Candidate], q: RouteQuery) -> Candidate:
        return min(ok, key=lambda c: (c.current_agents, c.load, c.name))

    def _response_time(self, ok: list[Candidate], q: RouteQuery) -> Candidate:
        return weighted(ok, [1.0 / max(c.latency_ms, 1.0) for c in ok], self._rng)

    def _health_score(self, ok: list[Candidate], q: RouteQuery) -> Candidate:
        return weighted(ok, [float(c.score) for c in ok], self._rng)

    def _geographic(self, ok: list[Candidate], q: RouteQuery) -> Candidate:
        return min(ok, key=lambda c: (-proximity(q.region, c.region), -c.score, c.name))
