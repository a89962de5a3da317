"""The registry's own eyes (spec §4.2 health monitoring): every GODEL_CLUSTER_PROBE_SECONDS it probes
each registered cluster's gateway (SystemService.GetHealth, public, so no credential crosses), keeps
the recent probes, and has the registry assess every cluster again: a cluster that stopped
heartbeating turns degraded, then offline, within one probe interval of its timeouts. Expired
session affinities are removed on the same beat."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from godel.v1 import system_service_pb2, system_service_pb2_grpc
from godel_server.cluster.clusters import ClusterRegistry
from godel_server.cluster.scoring import Probe
from godel_server.runtime.events import utcnow
from godel_server.runtime.federation import cluster_channel
from godel_server.runtime.periodic import Periodic

log = logging.getLogger(__name__)

# A probe that gets no answer at all: the gateway (or the cluster service behind it) is unreachable.
UNREACHED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def probe(channel: grpc.aio.Channel, timeout: float) -> Probe:
    """One GetHealth call: reached (any answer), ok (a healthy answer) and its latency."""
    started = time.perf_counter()
    try:
        reply = await system_service_pb2_grpc.SystemServiceStub(channel).GetHealth(
            system_service_pb2.GetHealthRequest(), timeout=timeout
        )
    except grpc.aio.AioRpcError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        error = f"{exc.code().name}: {exc.details() or ''}".strip()[:500]
        return Probe(reached=exc.code() not in UNREACHED, ok=False, latency_ms=elapsed, error=error)
    elapsed = (time.perf_counter() - started) * 1000
    healthy = reply.status == system_service_pb2.HEALTH_STATUS_HEALTHY
    status = system_service_pb2.HealthStatus.Name(reply.status)
    return Probe(reached=True, ok=healthy, latency_ms=elapsed, error="" if healthy else status)


class ClusterMonitor:
    def __init__(
        self,
        registry: ClusterRegistry,
        interval: float,
        *,
        housekeeping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._registry = registry
        self._timeout = max(1.0, 2 * registry.policy.max_latency_ms / 1000)
        self._housekeeping = housekeeping
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._loop = Periodic("cluster-monitor", interval, self.tick)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def tick(self) -> None:
        """Probes every cluster once, then assesses them all."""
        endpoints = await self._registry.endpoints()
        self._registry.forget_probes_except(set(endpoints))
        await self._close_channels_except(set(endpoints.values()))
        probes = await asyncio.gather(*(probe(self._channel(e), self._timeout) for e in endpoints.values()))
        now = utcnow()
        for cluster_id, result in zip(endpoints, probes, strict=True):
            self._registry.record_probe(cluster_id, result, now)
        for row in await self._registry.assess_all():
            log.warning(
                "cluster status changed",
                extra={"cluster": row.name, "status": row.status, "score": row.health_score},
            )
        if self._housekeeping is not None:
            await self._housekeeping()

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = cluster_channel(endpoint)
        return channel

    async def _close_channels_except(self, endpoints: set[str]) -> None:
        for endpoint in set(self._channels) - endpoints:
            await self._channels.pop(endpoint).close()
