"""Checks behind SystemService's detailed health and readiness: every service (grpc.health.v1, which
each service keeps NOT_SERVING while its own database fails), Kafka, and this service's database."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from godel.v1 import system_service_pb2
from godel_server.runtime.config import ROLES, Settings
from godel_server.runtime.db import Database
from godel_server.runtime.kafka import kafka_ping

HEALTHY = system_service_pb2.HEALTH_STATUS_HEALTHY
UNHEALTHY = system_service_pb2.HEALTH_STATUS_UNHEALTHY
TIMEOUT = 2.0


async def _timed(
    name: str, endpoint: str, check: Callable[[], Awaitable[str]]
) -> system_service_pb2.ComponentHealth:
    started = time.perf_counter()
    try:
        message = await asyncio.wait_for(check(), TIMEOUT)
        status = HEALTHY
    except Exception as exc:  # any failure is reported, not raised
        message, status = (str(exc) or type(exc).__name__), UNHEALTHY
    return system_service_pb2.ComponentHealth(
        name=name,
        status=status,
        message=message,
        endpoint=endpoint,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


async def _grpc_health(addr: str) -> str:
    async with grpc.aio.insecure_channel(addr) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=TIMEOUT
        )
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise RuntimeError(f"not serving ({health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)})")
    return "serving"


async def check_components(settings: Settings, db: Database) -> list[system_service_pb2.ComponentHealth]:
    async def db_check() -> str:
        await db.ping()
        return "ok (sqlite)" if db.is_sqlite else "ok (postgresql)"

    async def kafka() -> str:
        await kafka_ping(settings.kafka_bootstrap, TIMEOUT)
        return "ok"

    checks = [
        _timed(f"{role}-service", addr, functools.partial(_grpc_health, addr))
        for role, addr in ((r, settings.service_addrs[r]) for r in ROLES)
    ]
    checks.append(_timed("kafka", settings.kafka_bootstrap, kafka))
    checks.append(_timed("cluster-service/database", db.engine.url.render_as_string(), db_check))
    return list(await asyncio.gather(*checks))


def overall(
    components: list[system_service_pb2.ComponentHealth],
) -> system_service_pb2.HealthStatus.ValueType:
    return HEALTHY if all(c.status == HEALTHY for c in components) else UNHEALTHY
