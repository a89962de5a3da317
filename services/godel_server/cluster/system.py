"""SystemService: health (public and detailed), readiness, liveness, capabilities, OpenAPI, metrics
(the merged Prometheus exposition, and the JSON summaries of agents, teams and the platform)."""

from __future__ import annotations

import asyncio

import grpc
from google.api import httpbody_pb2

from godel.v1 import system_service_pb2, system_service_pb2_grpc
from godel_server import __version__
from godel_server.cluster.capabilities import Capabilities
from godel_server.cluster.collector import MetricsCollector
from godel_server.cluster.health import HEALTHY, check_components, check_workers, overall
from godel_server.cluster.metrics import merged_exposition
from godel_server.cluster.summaries import agent_metrics, system_metrics, teams_metrics
from godel_server.runtime.config import Settings
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.deadletter_rpcs import DeadLetterRpcs
from godel_server.runtime.errors import UnavailableError


class SystemServicer(DeadLetterRpcs, system_service_pb2_grpc.SystemServiceServicer):
    def __init__(self, settings: Settings, db: Database, collector: MetricsCollector) -> None:
        self._settings = settings
        self._db = db
        self._capabilities = Capabilities(settings)
        self._collector = collector

    async def GetHealth(
        self, request: system_service_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetHealthResponse:
        response = system_service_pb2.GetHealthResponse(status=HEALTHY, version=__version__)
        response.time.GetCurrentTime()
        return response

    async def GetDetailedHealth(
        self, request: system_service_pb2.GetDetailedHealthRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetDetailedHealthResponse:
        caller = current_caller()
        credentials = (("x-api-key", caller.credential),) if caller and caller.credential else ()
        components, (workers_health, workers) = await asyncio.gather(
            check_components(self._settings, self._db),
            check_workers(self._settings.service_addrs["agent"], credentials, self._settings.tls),
        )
        components.append(workers_health)
        response = system_service_pb2.GetDetailedHealthResponse(
            status=overall(components), components=components, version=__version__, workers=workers
        )
        response.time.GetCurrentTime()
        return response

    async def GetReadiness(
        self, request: system_service_pb2.GetReadinessRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetReadinessResponse:
        components = await check_components(self._settings, self._db)
        waiting = [c.name for c in components if c.status != HEALTHY]
        if waiting:
            raise UnavailableError(f"not ready: waiting for {', '.join(waiting)}")
        return system_service_pb2.GetReadinessResponse(ready=True)

    async def GetLiveness(
        self, request: system_service_pb2.GetLivenessRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetLivenessResponse:
        return system_service_pb2.GetLivenessResponse(alive=True)

    async def GetCapabilities(
        self, request: system_service_pb2.GetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetCapabilitiesResponse:
        return await self._capabilities.current()

    async def GetOpenApi(
        self, request: system_service_pb2.GetOpenApiRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        path = self._settings.openapi_path
        try:
            data = path.read_bytes()
        except OSError:
            raise UnavailableError(f"OpenAPI document not found at {path}; run `make gen`") from None
        return httpbody_pb2.HttpBody(content_type="application/json", data=data)

    async def GetMetrics(
        self, request: system_service_pb2.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        text = await merged_exposition(self._settings)
        return httpbody_pb2.HttpBody(
            content_type="text/plain; version=0.0.4; charset=utf-8", data=text.encode()
        )

    async def GetAgentMetrics(
        self, request: system_service_pb2.GetAgentMetricsRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetAgentMetricsResponse:
        return agent_metrics(await self._collector.collect())

    async def GetTeamsMetrics(
        self, request: system_service_pb2.GetTeamsMetricsRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetTeamsMetricsResponse:
        return teams_metrics(await self._collector.collect())

    async def GetSystemMetrics(
        self, request: system_service_pb2.GetSystemMetricsRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetSystemMetricsResponse:
        return system_metrics(await self._collector.collect())
