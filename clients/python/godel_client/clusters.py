"""``client.clusters``: the clusters of a federation, their health, routing and session affinity
(ClusterService); ``placement`` builds where an agent may run (``client.agents.create``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from godel.v1 import agent_pb2, cluster_pb2, cluster_service_pb2
from godel_client.enums import (
    BalanceStrategyLike,
    ClusterStatusLike,
    cluster_status,
    enum_numbers,
    load_balance_strategy,
)
from godel_client.methods import Mode, SubClient, by_id, paged, unary
from godel_client.service import to_struct


def _strategy(value: BalanceStrategyLike | None) -> cluster_pb2.LoadBalanceStrategy.ValueType:
    return (
        load_balance_strategy(value) if value is not None else cluster_pb2.LOAD_BALANCE_STRATEGY_UNSPECIFIED
    )


def placement(
    *,
    region: str | None = None,
    min_capacity: int = 0,
    features: Iterable[str] = (),
    strategy: BalanceStrategyLike | None = None,
) -> agent_pb2.AgentPlacement:
    """Where an agent may run in a federation, for ``client.agents.create(..., placement=...)``: a
    cluster in ``region``, with ``min_capacity`` free slots, offering ``features``."""
    return agent_pb2.AgentPlacement(
        region=region or "", min_capacity=min_capacity, features=list(features), strategy=_strategy(strategy)
    )


def _list(
    *,
    region: str | None = None,
    status: ClusterStatusLike | Iterable[ClusterStatusLike] | None = None,
    features: Iterable[str] = (),
    model: str | None = None,
    page_size: int = 50,
) -> cluster_service_pb2.ListClustersRequest:
    """Registered clusters (in ``region``, of a ``status``, offering all ``features``, supporting
    ``model``), by name, fetched page by page."""
    return cluster_service_pb2.ListClustersRequest(
        page_size=page_size,
        region=region or "",
        status=enum_numbers(status, cluster_status),
        features=list(features),
        model=model or "",
    )


def _register(
    name: str,
    endpoint: str,
    *,
    region: str | None = None,
    api_version: str | None = None,
    max_agents: int | None = None,
    features: Iterable[str] = (),
    supported_models: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> cluster_service_pb2.RegisterClusterRequest:
    """Registers a cluster (a Godel mesh reachable at ``endpoint``) in this mesh's registry."""
    return cluster_service_pb2.RegisterClusterRequest(
        name=name,
        endpoint=endpoint,
        region=region or "",
        api_version=api_version or "",
        max_agents=max_agents or 0,
        features=list(features),
        supported_models=list(supported_models),
        metadata=to_struct(metadata),
    )


def _heartbeat(
    id: str, *, current_agents: int = 0, max_agents: int | None = None
) -> cluster_service_pb2.HeartbeatRequest:
    """Reports a cluster alive with its load (its agents, and its slots when given); the answer
    says when to report next. The registry computes the cluster's health score itself."""
    return cluster_service_pb2.HeartbeatRequest(id=id, current_agents=current_agents, max_agents=max_agents)


def _unregister(id: str) -> cluster_service_pb2.UnregisterClusterRequest:
    """Removes a cluster (by id or name) from the registry."""
    return cluster_service_pb2.UnregisterClusterRequest(id=id)


def _route(
    *,
    region: str | None = None,
    require_region: bool = False,
    model: str | None = None,
    features: Iterable[str] = (),
    min_capacity: int = 0,
    strategy: BalanceStrategyLike | None = None,
    session_id: str | None = None,
    exclude: Iterable[str] = (),
    prefer_local: bool = False,
) -> cluster_service_pb2.RouteRequestRequest:
    """The cluster the registry picks for a request, and why (README "Federation")."""
    return cluster_service_pb2.RouteRequestRequest(
        region=region or "",
        require_region=require_region,
        model=model or "",
        required_features=list(features),
        min_capacity=min_capacity,
        strategy=_strategy(strategy),
        session_id=session_id or "",
        exclude_clusters=list(exclude),
        prefer_local=prefer_local,
    )


def _set_affinity(
    session_id: str, cluster: str, *, ttl: float | None = None
) -> cluster_service_pb2.SetClusterAffinityRequest:
    """Binds a session to a cluster (id or name) for ``ttl`` seconds (default: the registry's)."""
    request = cluster_service_pb2.SetClusterAffinityRequest(session_id=session_id, cluster_id=cluster)
    if ttl is not None:
        request.ttl.FromTimedelta(timedelta(seconds=ttl))
    return request


def _get_affinity(session_id: str) -> cluster_service_pb2.GetClusterAffinityRequest:
    """The cluster a session is bound to (NotFoundError when it is bound to none)."""
    return cluster_service_pb2.GetClusterAffinityRequest(session_id=session_id)


def _clear_affinity(session_id: str) -> cluster_service_pb2.ClearClusterAffinityRequest:
    """Unbinds a session."""
    return cluster_service_pb2.ClearClusterAffinityRequest(session_id=session_id)


class Clusters(SubClient[Mode]):
    """The cluster registry of the mesh."""

    SERVICE = cluster_service_pb2.DESCRIPTOR.services_by_name["ClusterService"]

    list = paged("ListClusters", _list, cluster_service_pb2.ListClustersResponse, lambda page: page.clusters)
    get = unary("GetCluster", by_id(cluster_service_pb2.GetClusterRequest), cluster_pb2.Cluster)
    register = unary("RegisterCluster", _register, cluster_pb2.Cluster)
    heartbeat = unary("Heartbeat", _heartbeat, cluster_service_pb2.HeartbeatResponse)
    unregister = unary(
        "UnregisterCluster", _unregister, cluster_service_pb2.UnregisterClusterResponse, lambda _: None
    )
    route = unary("RouteRequest", _route, cluster_service_pb2.RouteRequestResponse)
    set_affinity = unary("SetClusterAffinity", _set_affinity, cluster_pb2.ClusterAffinity)
    get_affinity = unary("GetClusterAffinity", _get_affinity, cluster_pb2.ClusterAffinity)
    clear_affinity = unary(
        "ClearClusterAffinity",
        _clear_affinity,
        cluster_service_pb2.ClearClusterAffinityResponse,
        lambda _: None,
    )
