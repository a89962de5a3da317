"""ClusterService: federation registry and heartbeats (spec §4.2 ClusterRegistry)."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import json_format
from sqlalchemy import select

from godel.v1 import cluster_pb2, cluster_service_pb2, cluster_service_pb2_grpc, event_pb2
from godel_server.cluster.models import ClusterRow
from godel_server.runtime.db import Database
from godel_server.runtime.errors import ClusterNotFoundError
from godel_server.runtime.events import new_event, set_structs, set_times, struct_to_dict, utcnow
from godel_server.runtime.pagination import decode_token, page_size, query_fingerprint, split_page
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.validation import Violations

COMPONENT = "cluster-service"
HEARTBEAT_SECONDS = 30
STATUS_TO_PROTO = {
    "online": cluster_pb2.CLUSTER_STATUS_ONLINE,
    "degraded": cluster_pb2.CLUSTER_STATUS_DEGRADED,
    "offline": cluster_pb2.CLUSTER_STATUS_OFFLINE,
    "draining": cluster_pb2.CLUSTER_STATUS_DRAINING,
}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}


def cluster_to_proto(row: ClusterRow) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        id=row.id,
        name=row.name,
        region=row.region or "",
        endpoint=row.endpoint,
        api_version=row.api_version or "",
        status=STATUS_TO_PROTO.get(row.status, cluster_pb2.CLUSTER_STATUS_UNSPECIFIED),
        health_score=row.health_score,
        max_agents=row.max_agents,
        current_agents=row.current_agents,
        load_factor=(row.current_agents / row.max_agents) if row.max_agents else 0.0,
        features=list(row.features or []),
        supported_models=list(row.supported_models or []),
    )
    set_structs(cluster, metadata=row.meta)
    set_times(
        cluster, last_heartbeat=row.last_heartbeat, created_at=row.created_at, updated_at=row.updated_at
    )
    return cluster


def _check_endpoint(v: Violations, endpoint: str) -> None:
    host, sep, port = endpoint.rpartition(":")
    if not endpoint:
        v.add("endpoint", "is required")
    elif not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        v.add("endpoint", "must be host:port")


class ClusterServicer(cluster_service_pb2_grpc.ClusterServiceServicer):
    def __init__(self, db: Database, publisher: EventPublisher, *, instance: str) -> None:
        self._db = db
        self._publisher = publisher
        self._instance = instance

    def _event(self, event_type: str, row: ClusterRow) -> event_pb2.Event:
        return new_event(
            event_type,
            {"cluster": json_format.MessageToDict(cluster_to_proto(row))},
            partition_key=row.id,
            component=COMPONENT,
            instance=self._instance,
        )

    async def RegisterCluster(
        self, request: cluster_service_pb2.RegisterClusterRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.Cluster:
        v = Violations()
        v.require("name", request.name, max_len=255)
        _check_endpoint(v, request.endpoint)
        v.max_len("region", request.region, 100)
        if request.max_agents < 0:
            v.add("max_agents", "must not be negative")
        v.raise_if_any()
        now = utcnow()
        async with self._db.session() as session:
            row = await session.scalar(select(ClusterRow).where(ClusterRow.name == request.name))
            if row is None:
                row = ClusterRow(
                    id=str(uuid.uuid4()),
                    name=request.name,
                    created_at=now,
                    current_agents=0,
                    health_score=100,
                )
                session.add(row)
            row.region = request.region or None
            row.endpoint = request.endpoint
            row.api_version = request.api_version or None
            row.max_agents = request.max_agents
            row.features = list(request.features)
            row.supported_models = list(request.supported_models)
            row.meta = struct_to_dict(request.metadata)
            row.status = "online"
            row.last_heartbeat = now
            row.updated_at = now
            await session.flush()
            await self._publisher.publish(session, [self._event("cluster:register", row)])
            return cluster_to_proto(row)

    async def GetCluster(
        self, request: cluster_service_pb2.GetClusterRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.Cluster:
        v = Violations()
        v.require("id", request.id)
        v.raise_if_any()
        async with self._db.reader() as session:
            row = await session.get(ClusterRow, request.id)
        if row is None:
            raise ClusterNotFoundError(request.id)
        return cluster_to_proto(row)

    async def ListClusters(
        self, request: cluster_service_pb2.ListClustersRequest, context: grpc.aio.ServicerContext
    ) -> cluster_service_pb2.ListClustersResponse:
        size = page_size(request.page_size)
        statuses = [STATUS_FROM_PROTO[s] for s in request.status if s in STATUS_FROM_PROTO]
        fingerprint = query_fingerprint("clusters", statuses, request.region)
        cursor = decode_token(request.page_token, fingerprint)
        stmt = select(ClusterRow)
        if statuses:
            stmt = stmt.where(ClusterRow.status.in_(statuses))
        if request.region:
            stmt = stmt.where(ClusterRow.region == request.region)
        if cursor:
            stmt = stmt.where(ClusterRow.name > str(cursor.get("n", "")))
        async with self._db.reader() as session:
            rows = list((await session.scalars(stmt.order_by(ClusterRow.name).limit(size + 1))).all())
        page, token = split_page(rows, size, lambda r: {"n": r.name}, fingerprint)
        return cluster_service_pb2.ListClustersResponse(
            clusters=[cluster_to_proto(r) for r in page], next_page_token=token
        )

    async def Heartbeat(
        self, request: cluster_service_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> cluster_service_pb2.HeartbeatResponse:
        v = Violations()
        v.require("id", request.id)
        if request.current_agents < 0:
            v.add("current_agents", "must not be negative")
        if request.HasField("health_score") and not 0 <= request.health_score <= 100:
            v.add("health_score", "must be between 0 and 100")
        v.raise_if_any()
        now = utcnow()
        async with self._db.session() as session:
            row = await session.get(ClusterRow, request.id)
            if row is None:
                raise ClusterNotFoundError(request.id)
            was = row.status
            row.last_heartbeat = now
            row.updated_at = now
            row.current_agents = request.current_agents
            if request.HasField("health_score"):
                row.health_score = request.health_score
            row.status = "online" if row.health_score >= 50 else "degraded"
            if row.status != was:
                await self._publisher.publish(session, [self._event("cluster:status", row)])
            cluster = cluster_to_proto(row)
        return cluster_service_pb2.HeartbeatResponse(
            cluster=cluster, next_heartbeat_seconds=HEARTBEAT_SECONDS
        )
