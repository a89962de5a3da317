"""The federation registry (spec §4.2 ClusterRegistry): clusters register, heartbeat and unregister;
lookups by status, region, features and supported models; and the assessment that turns what the
registry observed (monitor.py's probes, the heartbeats) into each cluster's health score and status
(scoring.py). Every registration, status change and unregistration is a `cluster:*` event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import cluster_events_pb2, cluster_pb2, cluster_service_pb2, event_pb2
from godel_server.cluster.balancer import Candidate
from godel_server.cluster.models import ClusterRow
from godel_server.cluster.scoring import Probe, ProbeWindow, Timeouts, factors, health_score, status_for
from godel_server.runtime.db import Database
from godel_server.runtime.errors import ClusterNotFoundError
from godel_server.runtime.events import (
    new_event,
    set_structs,
    set_times,
    struct_to_dict,
    to_timestamp,
    utcnow,
)
from godel_server.runtime.ids import new_id
from godel_server.runtime.pagination import Keyset, PageRequest
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import CLUSTER_STATUS, ClusterStatus

COMPONENT = "cluster-service"
BY_NAME = Keyset((ClusterRow.name,))
# Feature and model filters are applied to pages of this many rows.
SCAN_PAGE = 200


@dataclass(frozen=True)
class HealthPolicy:
    """How the registry judges clusters (GODEL_CLUSTER_* settings)."""

    timeouts: Timeouts
    max_latency_ms: float
    # This registry's own cluster (GODEL_CLUSTER_NAME), "" when not federated.
    local_name: str = ""


@dataclass(frozen=True)
class ClusterQuery:
    statuses: tuple[ClusterStatus, ...] = ()
    region: str = ""
    features: tuple[str, ...] = ()
    model: str = ""

    def matches(self, row: ClusterRow) -> bool:
        """The feature and model filters (the others are SQL)."""
        if not set(self.features) <= set(row.features or []):
            return False
        return not self.model or not row.supported_models or self.model in row.supported_models


def cluster_to_proto(row: ClusterRow, local_name: str = "") -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        id=row.id,
        name=row.name,
        region=row.region or "",
        endpoint=row.endpoint,
        api_version=row.api_version or "",
        status=CLUSTER_STATUS.to_proto(row.status),
        health_score=row.health_score,
        max_agents=row.max_agents,
        current_agents=row.current_agents,
        load_factor=(row.current_agents / row.max_agents) if row.max_agents else 0.0,
        features=list(row.features or []),
        supported_models=list(row.supported_models or []),
        local=bool(local_name) and row.name == local_name,
    )
    health = row.health or {}
    if health:
        cluster.health.CopyFrom(
            json_format.ParseDict(
                {k: v for k, v in health.items() if k != "lastProbeTime"},
                cluster_pb2.ClusterHealth(),
                ignore_unknown_fields=True,
            )
        )
        if health.get("lastProbeTime"):
            probed = to_timestamp(datetime.fromisoformat(health["lastProbeTime"]))
            if probed is not None:
                cluster.health.last_probe_time.CopyFrom(probed)
    set_structs(cluster, metadata=row.meta)
    set_times(
        cluster, last_heartbeat=row.last_heartbeat, created_at=row.created_at, updated_at=row.updated_at
    )
    return cluster


def candidate_of(row: ClusterRow, local_name: str = "") -> Candidate:
    """A registered cluster as the load balancer sees it."""
    return Candidate(
        id=row.id,
        name=row.name,
        region=row.region or "",
        status=row.status,
        score=row.health_score,
        current_agents=row.current_agents,
        max_agents=row.max_agents,
        latency_ms=float((row.health or {}).get("latencyMs", 0.0)),
        features=frozenset(row.features or []),
        models=frozenset(row.supported_models or []),
        local=bool(local_name) and row.name == local_name,
    )


async def _find(session: AsyncSession, ident: str) -> ClusterRow:
    """The cluster whose id or name is `ident`; NOT_FOUND when there is none."""
    row = await session.scalar(
        select(ClusterRow).where(or_(ClusterRow.id == ident, ClusterRow.name == ident))
    )
    if row is None:
        raise ClusterNotFoundError(ident)
    return row


class ClusterRegistry:
    def __init__(
        self, db: Database, publisher: EventPublisher, *, instance: str, policy: HealthPolicy
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._instance = instance
        self.policy = policy
        # The recent probes of each cluster (by id), fed by monitor.py.
        self.probes: dict[str, ProbeWindow] = {}

    def to_proto(self, row: ClusterRow) -> cluster_pb2.Cluster:
        return cluster_to_proto(row, self.policy.local_name)

    def _event(self, data: Message, row: ClusterRow) -> event_pb2.Event:
        return new_event(
            data,
            partition_key=row.id,
            component=COMPONENT,
            instance=self._instance,
        )

    # ---- registration and heartbeats --------------------------------------------------------
    async def register(self, request: cluster_service_pb2.RegisterClusterRequest) -> ClusterRow:
        """Adds a cluster, or updates the one of that name; registering counts as a heartbeat."""
        now = utcnow()
        async with self._db.session() as session:
            row = await session.scalar(select(ClusterRow).where(ClusterRow.name == request.name))
            if row is None:
                row = ClusterRow(
                    id=new_id(),
                    name=request.name,
                    created_at=now,
                    current_agents=0,
                    health_score=100,
                    status=ClusterStatus.ONLINE,
                    health={},
                )
                session.add(row)
            row.region = request.region or None
            row.endpoint = request.endpoint
            row.api_version = request.api_version or None
            row.max_agents = request.max_agents
            row.features = sorted(set(request.features))
            row.supported_models = sorted(set(request.supported_models))
            row.meta = struct_to_dict(request.metadata)
            row.last_heartbeat = now
            row.updated_at = now
            was = row.status
            self._assess(row, now)
            await session.flush()
            events = [self._event(cluster_events_pb2.ClusterRegistered(cluster=self.to_proto(row)), row)]
            if row.status != was:
                events.append(self._status_event(row, was))
            await self._publisher.publish(session, events)
        return row

    async def heartbeat(self, cluster_id: str, current_agents: int, max_agents: int | None) -> ClusterRow:
        """Records a heartbeat and the load it reports, and assesses the cluster again."""
        now = utcnow()
        async with self._db.session() as session:
            row = await session.get(ClusterRow, cluster_id)
            if row is None:
                raise ClusterNotFoundError(cluster_id)
            was = row.status
            row.last_heartbeat = now
            row.updated_at = now
            row.current_agents = current_agents
            if max_agents is not None:
                row.max_agents = max_agents
            self._assess(row, now)
            if row.status != was:
                await self._publisher.publish(session, [self._status_event(row, was)])
        return row

    async def unregister(self, cluster_id: str) -> None:
        """Removes a cluster (by id or name) from the registry; NOT_FOUND when there is none."""
        async with self._db.session() as session:
            row = await _find(session, cluster_id)
            event = self._event(cluster_events_pb2.ClusterUnregistered(cluster=self.to_proto(row)), row)
            await session.delete(row)
            await self._publisher.publish(session, [event])
        self.probes.pop(row.id, None)

    # ---- assessment ---------------------------------------------------------------------------
    def _assess(self, row: ClusterRow, now: datetime) -> None:
        """Recomputes the row's factors, score and status from its probes and heartbeat age."""
        window = self.probes.get(row.id)
        probes = window.probes if window else []
        age = (now - row.last_heartbeat).total_seconds() if row.last_heartbeat else float("inf")
        f = factors(
            probes,
            current_agents=row.current_agents,
            max_agents=row.max_agents,
            heartbeat_age=age,
            timeouts=self.policy.timeouts,
            max_latency_ms=self.policy.max_latency_ms,
        )
        row.health_score = health_score(f, self.policy.max_latency_ms)
        row.status = status_for(row.status, age, row.health_score, self.policy.timeouts)
        last: Probe | None = window.last if window else None
        health: dict[str, Any] = {
            "connectivity": round(f.connectivity, 4),
            "latencyMs": round(f.latency_ms, 3),
            "errorRate": round(f.error_rate, 4),
            "capacity": round(f.capacity, 4),
            "freshness": round(f.freshness, 4),
            "probes": f.probes,
        }
        if last is not None and window is not None and window.last_time is not None:
            health["lastProbeTime"] = window.last_time.isoformat()
            health["lastProbeError"] = last.error
        if health != (row.health or {}):
            row.health = health

    def _status_event(self, row: ClusterRow, was: ClusterStatus) -> event_pb2.Event:
        data = cluster_events_pb2.ClusterStatusChanged(
            cluster=self.to_proto(row),
            previous_status=CLUSTER_STATUS.to_proto_or(was, cluster_pb2.CLUSTER_STATUS_UNSPECIFIED),
            reason=self._why(row),
        )
        return self._event(data, row)

    def _why(self, row: ClusterRow) -> str:
        t = self.policy.timeouts
        if row.status == ClusterStatus.OFFLINE:
            return f"no heartbeat for more than {t.offline_after:g}s"
        if row.status == ClusterStatus.DEGRADED:
            return f"health score {row.health_score} (degraded below 50, or no heartbeat for {t.degraded_after:g}s)"
        return f"heartbeating, health score {row.health_score}"

    async def assess_all(self) -> list[ClusterRow]:
        """Assesses every cluster now; stores what changed, with a `cluster:status` event for each
        change of status. Returns the clusters whose status changed."""
        now = utcnow()
        changed: list[ClusterRow] = []
        async with self._db.session() as session:
            rows = (await session.scalars(select(ClusterRow))).all()
            events = []
            for row in rows:
                was, score, health = row.status, row.health_score, row.health
                self._assess(row, now)
                if row.status != was:
                    events.append(self._status_event(row, was))
                    changed.append(row)
                if (row.status, row.health_score, row.health) != (was, score, health):
                    row.updated_at = now
            if events:
                await self._publisher.publish(session, events)
        return changed

    def record_probe(self, cluster_id: str, probe: Probe, at: datetime) -> None:
        window = self.probes.setdefault(cluster_id, ProbeWindow())
        window.add(probe, at)

    def forget_probes_except(self, cluster_ids: set[str]) -> None:
        for gone in set(self.probes) - cluster_ids:
            del self.probes[gone]

    # ---- lookups ------------------------------------------------------------------------------
    async def get(self, cluster_id: str) -> ClusterRow:
        async with self._db.reader() as session:
            row = await session.get(ClusterRow, cluster_id)
        if row is None:
            raise ClusterNotFoundError(cluster_id)
        return row

    async def by_id_or_name(self, ident: str) -> ClusterRow:
        async with self._db.reader() as session:
            return await _find(session, ident)

    async def all(self) -> Sequence[ClusterRow]:
        async with self._db.reader() as session:
            return (await session.scalars(select(ClusterRow).order_by(ClusterRow.name))).all()

    async def candidates(self) -> list[Candidate]:
        return [candidate_of(r, self.policy.local_name) for r in await self.all()]

    async def endpoints(self) -> Mapping[str, str]:
        """Each cluster's gateway endpoint, by id (what the monitor probes)."""
        async with self._db.reader() as session:
            return dict((await session.execute(select(ClusterRow.id, ClusterRow.endpoint))).all())

    async def find(
        self, query: ClusterQuery, *, page_size: int, page_token: str
    ) -> tuple[Sequence[ClusterRow], str]:
        """One page of the clusters that match, by name: status and region filtered in SQL, features
        and models on rows read SCAN_PAGE at a time (registries hold few clusters)."""
        stmt = select(ClusterRow)
        if query.statuses:
            stmt = stmt.where(ClusterRow.status.in_(query.statuses))
        if query.region:
            stmt = stmt.where(ClusterRow.region == query.region)
        page = PageRequest.of(page_size, page_token, ("clusters", query), BY_NAME.kinds)
        after = page.after
        found: list[ClusterRow] = []
        async with self._db.reader() as session:
            while len(found) < page.limit:
                scan = stmt if after is None else stmt.where(BY_NAME.after(after))
                rows = (await session.scalars(BY_NAME.order(scan).limit(SCAN_PAGE))).all()
                found.extend(r for r in rows if query.matches(r))
                if len(rows) < SCAN_PAGE:
                    break
                after = BY_NAME.key(rows[-1])
        return page.split(found[: page.limit], BY_NAME.key)
