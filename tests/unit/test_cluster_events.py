"""The cluster registry publishes typed `cluster:*` events: a registration, each change of status
(from heartbeats, probes and the registry's own assessment of silent clusters) and an
unregistration; a heartbeat that changes nothing publishes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from godel.v1 import cluster_events_pb2, cluster_pb2, cluster_service_pb2
from godel_server.cluster.clusters import ClusterRegistry, HealthPolicy
from godel_server.cluster.models import ClusterRow
from godel_server.cluster.scoring import Probe, Timeouts
from godel_server.cluster.service import ClusterService
from godel_server.runtime.db import Database
from godel_server.runtime.events import event_data, utcnow
from godel_server.runtime.publisher import EventPublisher
from tests.unit.conftest import migrated, outbox_events

POLICY = HealthPolicy(Timeouts(heartbeat=10, degraded_after=30, offline_after=60), max_latency_ms=1000)


@pytest.fixture
async def cluster_db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated(tmp_path / "cluster.db", ClusterService.migrations) as database:
        yield database


async def test_registry_events_are_typed(cluster_db: Database) -> None:
    registry = ClusterRegistry(cluster_db, EventPublisher(None, "home"), instance="cluster-1", policy=POLICY)
    request = cluster_service_pb2.RegisterClusterRequest(name="eu-1", endpoint="10.0.0.1:7373", max_agents=8)
    cluster = await registry.register(request)
    await registry.heartbeat(cluster.id, current_agents=2, max_agents=None)  # no change: no event
    for _ in range(3):  # its gateway does not answer: connectivity, latency and errors score 0
        registry.record_probe(cluster.id, Probe(reached=False, ok=False, latency_ms=2000), utcnow())
    await registry.heartbeat(cluster.id, current_agents=2, max_agents=None)
    async with cluster_db.session() as session:  # silent for longer than the offline timeout
        row = await session.get(ClusterRow, cluster.id)
        assert row is not None
        row.last_heartbeat = utcnow() - timedelta(seconds=61)
    assert [r.name for r in await registry.assess_all()] == ["eu-1"]
    await registry.unregister("eu-1")

    registered, degraded, offline, gone = await outbox_events(cluster_db)
    assert (registered.type, registered.partition_key, registered.source.cluster) == (
        "cluster:register",
        cluster.id,
        "home",
    )
    data = event_data(registered)
    assert isinstance(data, cluster_events_pb2.ClusterRegistered)
    assert (data.cluster.name, data.cluster.max_agents, data.cluster.status) == (
        "eu-1",
        8,
        cluster_pb2.CLUSTER_STATUS_ONLINE,
    )
    status = event_data(degraded)
    assert degraded.type == "cluster:status" and isinstance(status, cluster_events_pb2.ClusterStatusChanged)
    assert status.previous_status == cluster_pb2.CLUSTER_STATUS_ONLINE
    assert (status.cluster.status, status.cluster.current_agents) == (cluster_pb2.CLUSTER_STATUS_DEGRADED, 2)
    assert status.cluster.health_score == 25 and "health score 25" in status.reason  # 20 x 6/8 + 10
    went = event_data(offline)
    assert isinstance(went, cluster_events_pb2.ClusterStatusChanged)
    assert (went.previous_status, went.cluster.status) == (
        cluster_pb2.CLUSTER_STATUS_DEGRADED,
        cluster_pb2.CLUSTER_STATUS_OFFLINE,
    )
    assert went.reason == "no heartbeat for more than 60s"
    left = event_data(gone)
    assert gone.type == "cluster:unregister" and isinstance(left, cluster_events_pb2.ClusterUnregistered)
    assert left.cluster.id == cluster.id
