"""ClusterService: the federation registry, heartbeats, routing and session affinity (spec §4.2) over
clusters.ClusterRegistry, router.Router and affinity.AffinityStore. Handlers check input and map."""

from __future__ import annotations

import grpc

from godel.v1 import cluster_pb2, cluster_service_pb2, cluster_service_pb2_grpc
from godel_server.cluster.affinity import AffinityStore
from godel_server.cluster.balancer import RouteQuery
from godel_server.cluster.clusters import ClusterQuery, ClusterRegistry
from godel_server.cluster.models import AffinityRow
from godel_server.cluster.router import Router
from godel_server.runtime.errors import NotFoundError
from godel_server.runtime.events import set_times
from godel_server.runtime.statuses import CLUSTER_STATUS, LOAD_BALANCE_STRATEGY
from godel_server.runtime.validation import Violations

MAX_NAMES = 100
MAX_NAME_LEN = 255
MAX_TTL_SECONDS = 30 * 24 * 3600


def _check_endpoint(v: Violations, endpoint: str) -> None:
    host, sep, port = endpoint.rpartition(":")
    if not endpoint:
        v.add("endpoint", "is required")
    elif len(endpoint) > 500:
        v.add("endpoint", "must be at most 500 characters")
    elif not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        v.add("endpoint", "must be host:port")


def _check_names(v: Violations, field: str, values: list[str]) -> None:
    if len(values) > MAX_NAMES:
        v.add(field, f"must list at most {MAX_NAMES} names")
    if any(not value.strip() or len(value) > MAX_NAME_LEN for value in values):
        v.add(field, f"names must be non-empty and at most {MAX_NAME_LEN} characters")


def _required(field: str, value: str) -> None:
    v = Violations()
    v.require(field, value, max_len=MAX_NAME_LEN)
    v.raise_if_any()


def _affinity_to_proto(row: AffinityRow) -> cluster_pb2.ClusterAffinity:
    affinity = cluster_pb2.ClusterAffinity(session_id=row.session_id, cluster_id=row.cluster_id)
    set_times(affinity, expire_time=row.expires_at)
    return affinity


class ClusterServicer(cluster_service_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self, registry: ClusterRegistry, router: Router, affinity: AffinityStore, heartbeat_seconds: float
    ) -> None:
        self._registry = registry
        self._router = router
        self._affinity = affinity
        self._heartbeat_seconds = heartbeat_seconds

    async def RegisterCluster(
        self, request: cluster_service_pb2.RegisterClusterRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.Cluster:
        v = Violations()
        v.require("name", request.name, max_len=MAX_NAME_LEN)
        _check_endpoint(v, request.endpoint)
        v.max_len("region", request.region, 100)
        v.max_len("api_version", request.api_version, 20)
        if request.max_agents < 0:
            v.add("max_agents", "must not be negative")
        _check_names(v, "features", list(request.features))
        _check_names(v, "supported_models", list(request.supported_models))
        v.raise_if_any()
        return self._registry.to_proto(await self._registry.register(request))

    async def GetCluster(
        self, request: cluster_service_pb2.GetClusterRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.Cluster:
        _required("id", request.id)
        return self._registry.to_proto(await self._registry.by_id_or_name(request.id))

    async def ListClusters(
        self, request: cluster_service_pb2.ListClustersRequest, context: grpc.aio.ServicerContext
    ) -> cluster_service_pb2.ListClustersResponse:
        v = Violations()
        v.max_len("region", request.region, 100)
        v.max_len("model", request.model, MAX_NAME_LEN)
        _check_names(v, "features", list(request.features))
        v.raise_if_any()
        query = ClusterQuery(
            statuses=tuple(s for s in map(CLUSTER_STATUS.get, request.status) if s),
            region=request.region,
            features=tuple(sorted(set(request.features))),
            model=request.model,
        )
        rows, token = await self._registry.find(
            query, page_size=request.page_size, page_token=request.page_token
        )
        return cluster_service_pb2.ListClustersResponse(
            clusters=[self._registry.to_proto(r) for r in rows], next_page_token=token
        )

    async def UnregisterCluster(
        self, request: cluster_service_pb2.UnregisterClusterRequest, context: grpc.aio.ServicerContext
    ) -> cluster_service_pb2.UnregisterClusterResponse:
        _required("id", request.id)
        await self._registry.unregister(request.id)
        return cluster_service_pb2.UnregisterClusterResponse()

    async def Heartbeat(
        self, request: cluster_service_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> cluster_service_pb2.HeartbeatResponse:
        v = Violations()
        v.require("id", request.id, max_len=MAX_NAME_LEN)
        if request.current_agents < 0:
            v.add("current_agents", "must not be negative")
        if request.HasField("max_agents") and request.max_agents < 0:
            v.add("max_agents", "must not be negative")
        v.raise_if_any()
        row = await self._registry.heartbeat(
            request.id,
            request.current_agents,
            request.max_agents if request.HasField("max_agents") else None,
        )
        return cluster_service_pb2.HeartbeatResponse(
            cluster=self._registry.to_proto(row), next_heartbeat_seconds=round(self._heartbeat_seconds)
        )

    async def RouteRequest(
        self, request: cluster_service_pb2.RouteRequestRequest, context: grpc.aio.ServicerContext
    ) -> cluster_service_pb2.RouteRequestResponse:
        v = Violations()
        v.max_len("region", request.region, 100)
        if request.require_region and not request.region:
            v.add("region", "is required with require_region")
        v.max_len("model", request.model, MAX_NAME_LEN)
        _check_names(v, "required_features", list(request.required_features))
        _check_names(v, "exclude_clusters", list(request.exclude_clusters))
        if not 0 <= request.min_capacity <= 1_000_000:
            v.add("min_capacity", "must be between 0 and 1000000")
        v.max_len("session_id", request.session_id, MAX_NAME_LEN)
        strategy = LOAD_BALANCE_STRATEGY.get(request.strategy)
        if request.strategy and strategy is None:
            v.add("strategy", f"must be {LOAD_BALANCE_STRATEGY.choices()}")
        v.raise_if_any()
        decision = await self._router.route(
            RouteQuery(
                region=request.region,
                require_region=request.require_region,
                model=request.model,
                features=tuple(request.required_features),
                min_capacity=request.min_capacity,
                strategy=strategy,
                session_id=request.session_id,
                exclude=frozenset(request.exclude_clusters),
                prefer_local=request.prefer_local,
            )
        )
        cluster = self._registry.to_proto(await self._registry.get(decision.cluster.id))
        return cluster_service_pb2.RouteRequestResponse(
            cluster=cluster,
            reason=decision.reason,
            strategy=LOAD_BALANCE_STRATEGY.to_proto_or(
                decision.strategy, cluster_pb2.LOAD_BALANCE_STRATEGY_UNSPECIFIED
            ),
            affinity=decision.affinity,
            eligible=list(decision.eligible),
        )

    async def SetClusterAffinity(
        self, request: cluster_service_pb2.SetClusterAffinityRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.ClusterAffinity:
        v = Violations()
        v.require("session_id", request.session_id, max_len=MAX_NAME_LEN)
        v.require("cluster_id", request.cluster_id, max_len=MAX_NAME_LEN)
        ttl = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else None
        if ttl is not None and not 0 < ttl <= MAX_TTL_SECONDS:
            v.add("ttl", f"must be more than 0 and at most {MAX_TTL_SECONDS} seconds")
        v.raise_if_any()
        cluster = await self._registry.by_id_or_name(request.cluster_id)
        return _affinity_to_proto(await self._affinity.set(request.session_id, cluster.id, ttl))

    async def GetClusterAffinity(
        self, request: cluster_service_pb2.GetClusterAffinityRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.ClusterAffinity:
        _required("session_id", request.session_id)
        row = await self._affinity.get(request.session_id)
        if row is None:
            raise NotFoundError("cluster affinity", request.session_id)
        return _affinity_to_proto(row)

    async def ClearClusterAffinity(
        self, request: cluster_service_pb2.ClearClusterAffinityRequest, context: grpc.aio.ServicerContext
    ) -> cluster_service_pb2.ClearClusterAffinityResponse:
        _required("session_id", request.session_id)
        await self._affinity.clear(request.session_id)
        return cluster_service_pb2.ClearClusterAffinityResponse()
