"""Checks behind SystemService's detailed health and readiness: every service (grpc.health.v1, which
each service keeps NOT_SERVING while its own database fails), Kafka, and this service's database;
detailed health also lists the workers connected to the agent service (AgentService.ListWorkers,
asked with the caller's own credentials), "degraded" when there is none: agents cannot run."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from godel.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, system_service_pb2
from godel_server.runtime.config import Settings, TlsSettings
from godel_server.runtime.db import Database
from godel_server.runtime.kafka import kafka_ping
from godel_server.runtime.tls import open_channel
from godel_server.runtime.topology import ROLES

HEALTHY = system_service_pb2.HEALTH_STATUS_HEALTHY
DEGRADED = system_service_pb2.HEALTH_STATUS_DEGRADED
UNHEALTHY = system_service_pb2.HEALTH_STATUS_UNHEALTHY
TIMEOUT = 2.0


class Degraded(Exception):
    """The component answers but cannot do its whole job (e.g. no worker: agents wait)."""


async def _timed(
    name: str, endpoint: str, check: Callable[[], Awaitable[str]]
) -> system_service_pb2.ComponentHealth:
    started = time.perf_counter()
    try:
        message = await asyncio.wait_for(check(), TIMEOUT)
        status = HEALTHY
    except Degraded as exc:
        message, status = str(exc), DEGRADED
    except Exception as exc:  # any failure is reported, not raised
        message, status = (str(exc) or type(exc).__name__), UNHEALTHY
    return system_service_pb2.ComponentHealth(
        name=name,
        status=status,
        message=message,
        endpoint=endpoint,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


async def _grpc_health(addr: str, tls: TlsSettings) -> str:
    async with open_channel(addr, tls) as channel:
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
        await kafka_ping(settings.kafka, TIMEOUT)
        return "ok"

    checks = [
        _timed(f"{role}-service", addr, functools.partial(_grpc_health, addr, settings.tls))
        for role, addr in ((r, settings.service_addrs[r]) for r in ROLES)
    ]
    checks.append(_timed("kafka", settings.kafka.bootstrap, kafka))
    checks.append(_timed("cluster-service/database", db.engine.url.render_as_string(), db_check))
    return list(await asyncio.gather(*checks))


async def check_workers(
    agent_addr: str, metadata: tuple[tuple[str, str], ...], tls: TlsSettings
) -> tuple[system_service_pb2.ComponentHealth, list[agent_pb2.Worker]]:
    """The "workers" component and the workers connected to the agent service at `agent_addr`."""
    workers: list[agent_pb2.Worker] = []

    async def listing() -> str:
        try:
            async with open_channel(agent_addr, tls) as channel:
                reply = await agent_service_pb2_grpc.AgentServiceStub(channel).ListWorkers(
                    agent_service_pb2.ListWorkersRequest(), metadata=metadata, timeout=TIMEOUT
                )
        except grpc.aio.AioRpcError as exc:
            raise RuntimeError(
                f"cannot list workers: {exc.code().name} {exc.details() or ''}".strip()
            ) from None
        workers.extend(reply.workers)
        if not workers:
            raise Degraded(f"no worker is connected to {reply.replica_id}: agents wait pending")
        free = sum(w.free_slots for w in workers)
        return f"{len(workers)} connected to {reply.replica_id}, {free} free slot(s)"

    component = await _timed("workers", agent_addr, listing)
    return component, workers


def overall(
    components: list[system_service_pb2.ComponentHealth],
) -> system_service_pb2.HealthStatus.ValueType:
    """Unhealthy if any component is, else degraded if any is, else healthy."""
    statuses = {c.status for c in components}
    if statuses <= {HEALTHY}:
        return HEALTHY
    return DEGRADED if statuses <= {HEALTHY, DEGRADED} else UNHEALTHY
