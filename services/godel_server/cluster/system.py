"""SystemService: health (public and detailed), readiness, liveness, capabilities, OpenAPI, metrics."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2

from godel.v1 import system_service_pb2, system_service_pb2_grpc
from godel_server import __version__
from godel_server.cluster.health import HEALTHY, check_components, overall
from godel_server.cluster.metrics import merged_exposition
from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database
from godel_server.runtime.errors import UnavailableError
from godel_server.runtime.topics import ALL_TOPICS

SERVICES = (
    "godel.v1.AgentService",
    "godel.v1.EventService",
    "godel.v1.ClusterService",
    "godel.v1.AuthService",
    "godel.v1.SystemService",
)
FEATURES = (
    "agents.crud",
    "events.query",
    "events.publish",
    "events.subscribe.grpc",
    "events.subscribe.sse",
    "clusters.registry",
    "auth.api_keys",
)


class SystemServicer(system_service_pb2_grpc.SystemServiceServicer):
    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db

    async def GetHealth(
        self, request: system_service_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetHealthResponse:
        response = system_service_pb2.GetHealthResponse(status=HEALTHY, version=__version__)
        response.time.GetCurrentTime()
        return response

    async def GetDetailedHealth(
        self, request: system_service_pb2.GetDetailedHealthRequest, context: grpc.aio.ServicerContext
    ) -> system_service_pb2.GetDetailedHealthResponse:
        components = await check_components(self._settings, self._db)
        response = system_service_pb2.GetDetailedHealthResponse(
            status=overall(components), components=components, version=__version__
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
        return system_service_pb2.GetCapabilitiesResponse(
            version=__version__,
            api_version="v1",
            services=SERVICES,
            features=FEATURES,
            auth_methods=["api_key"],
            topics=ALL_TOPICS,
        )

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
