"""RouteRequest's domain object: the registry's clusters, the session's binding and the load balancer
(balancer.py) together; the chosen cluster becomes the session's binding."""

from __future__ import annotations

from godel_server.cluster.affinity import AffinityStore
from godel_server.cluster.balancer import Decision, LoadBalancer, RouteQuery
from godel_server.cluster.clusters import ClusterRegistry


class Router:
    def __init__(self, registry: ClusterRegistry, affinity: AffinityStore, balancer: LoadBalancer) -> None:
        self._registry = registry
        self._affinity = affinity
        self._balancer = balancer

    async def route(self, query: RouteQuery) -> Decision:
        candidates = await self._registry.candidates()
        bound = await self._affinity.get(query.session_id) if query.session_id else None
        decision = self._balancer.route(candidates, query, bound.cluster_id if bound else None)
        if query.session_id:
            await self._affinity.set(query.session_id, decision.cluster.id)
        return decision
