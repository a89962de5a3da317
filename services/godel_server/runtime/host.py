"""Process bootstrap shared by the four services: database + migrations, Kafka producer + outbox
relay, the gRPC server (health, reflection, interceptors), the admin HTTP port, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from godel_server.runtime import tracing
from godel_server.runtime.admin import AdminServer
from godel_server.runtime.auth import RemoteKeyVerifier
from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database, ensure_postgres_database
from godel_server.runtime.db_gauges import DatabaseGauges, GaugeSpec
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.interceptors import CallerPolicy, GodelServerInterceptor, KeyVerifier
from godel_server.runtime.kafka import ensure_topics, new_producer, wait_for_kafka
from godel_server.runtime.limits import CallerLimits, UserSlots
from godel_server.runtime.logs import configure_logging
from godel_server.runtime.migrations import require_head, upgrade
from godel_server.runtime.outbox import OutboxRelay
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.rbac import API_SERVICES
from godel_server.runtime.reflection import enable_reflection
from godel_server.runtime.revocation import StreamGuard
from godel_server.runtime.served import publish as publish_served
from godel_server.runtime.tls import add_port
from godel_server.runtime.topics import set_kafka_prefix
from godel_server.runtime.topology import PROCESSES, Role

log = logging.getLogger(__name__)

HEALTH_CHECK_SECONDS = 5.0


class Service(ABC):
    """One deployable: which gRPC services it serves, its migrations, and its start/stop hooks."""

    role: Role
    # The godel.v1 services of its role (runtime/topology.py): registered, health-checked, reflected.
    grpc_services: tuple[str, ...]
    migrations: Path

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.grpc_services = PROCESSES[cls.role].services

    def verifier(self, host: ServiceHost) -> KeyVerifier:
        s = host.settings
        return RemoteKeyVerifier(s.service_addrs["cluster"], s.auth_cache_seconds, s.tls)

    @abstractmethod
    def register(self, host: ServiceHost) -> None:
        """Adds the servicers to `host.server`."""

    def gauges(self) -> GaugeSpec | None:
        """Gauges read from its database at every scrape of /metrics (runtime/db_gauges.py)."""
        return None

    async def start(self, host: ServiceHost) -> None:  # noqa: B027
        """Starts background work (consumers, ...) after the database and Kafka are ready."""

    async def stop(self, host: ServiceHost) -> None:  # noqa: B027
        """Stops background work."""

    async def healthy(self, host: ServiceHost) -> None:
        """Raises when the service cannot serve (default: its database answers)."""
        await host.db.ping()


class ServiceHost:
    def __init__(self, settings: Settings, service: Service) -> None:
        self.settings = settings
        set_kafka_prefix(settings.kafka.topic_prefix)
        self.service = service
        self.db = Database(settings.database_url)
        self.producer = new_producer(settings.kafka, settings.instance_id)
        self.dead_letters = DeadLetterStore(
            self.db,
            component=f"{settings.role}-service",
            instance=settings.instance_id,
            producer=self.producer,
        )
        self.relay = OutboxRelay(
            self.db, self.producer, settings.outbox_poll_seconds, dead_letters=self.dead_letters
        )
        self.dead_letters.notify = self.relay.notify
        self.publisher = EventPublisher(self.relay, settings.federation.cluster_name)
        self.health = health.aio.HealthServicer()
        self.verifier = service.verifier(self)
        # Open streams (gRPC, and the event service's WebSocket sessions) end when their
        # credential is revoked; each user has a rate and a cap on open streams.
        self.guard = StreamGuard(self.verifier, settings.auth_recheck_seconds)
        policy = CallerPolicy(
            guard=self.guard,
            limits=CallerLimits(settings.rate_limit_per_key, settings.rate_limit_per_user),
            streams=UserSlots(settings.max_streams_per_user, "open streams"),
        )
        self.server: grpc.aio.Server = grpc.aio.server(
            # The trace's server span first (tracing on), so that Godel's interceptor runs in it.
            interceptors=[*tracing.server_interceptors(), GodelServerInterceptor(self.verifier, policy)],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        self._stopping = asyncio.Event()
        self._health_task: asyncio.Task[None] | None = None
        self.bound_port = 0
        self.serving = False
        self._admin: AdminServer | None = None
        self._gauges: DatabaseGauges | None = None

    async def prepare_database(self) -> None:
        if not self.settings.migrate_on_start:
            await require_head(self.db, self.service.migrations, self.settings.role)
            return
        if not self.db.is_sqlite:
            await ensure_postgres_database(self.settings.database_url)
        await upgrade(self.db, self.service.migrations)

    async def start(self) -> None:
        s = self.settings
        log.info("starting", extra={"role": s.role, "database": self.db.engine.url.render_as_string()})
        await self.prepare_database()
        await wait_for_kafka(s.kafka, timeout=120)
        await ensure_topics(s.kafka)
        await self.producer.start()
        self.relay.start()
        self.service.register(self)
        publish_served(self.service)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        enable_reflection(
            self.server,
            served=(*self.service.grpc_services, health_name),
            gateway=(*(service.full_name for service in API_SERVICES), health_name),
        )
        self.bound_port = add_port(self.server, s.grpc_address, s.tls)
        if self.bound_port == 0:
            raise RuntimeError(f"cannot bind gRPC port {s.grpc_address}")
        await self.service.start(self)
        self.guard.start()
        await self.server.start()
        spec = self.service.gauges()
        if spec is not None:
            self._gauges = DatabaseGauges(self.db, spec).register()
        if s.admin_port:
            self._admin = AdminServer(s.bind_host, s.admin_port, lambda: self.serving).start()
        await self._set_serving(True)
        self._health_task = asyncio.create_task(self._health_loop(), name="health")
        log.info(
            "serving",
            extra={"role": s.role, "grpc": s.grpc_address, "admin": f"{s.bind_host}:{s.admin_port}"},
        )

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service.grpc_services):
            await self.health.set(name, status)
        self.serving = serving

    async def _health_loop(self) -> None:
        serving = True
        while True:
            await asyncio.sleep(HEALTH_CHECK_SECONDS)
            try:
                await asyncio.wait_for(self.service.healthy(self), HEALTH_CHECK_SECONDS)
                ok = True
            except Exception as exc:
                ok = False
                log.warning("health check failed", extra={"error": repr(exc)})
            if ok != serving:
                serving = ok
                await self._set_serving(ok)

    async def stop(self) -> None:
        log.info("stopping", extra={"role": self.settings.role})
        if self._health_task:
            self._health_task.cancel()
        with contextlib.suppress(Exception):
            await self._set_serving(False)
        await self.server.stop(grace=3)
        await self.guard.stop()
        if self._gauges is not None:
            self._gauges.unregister()
        await self.service.stop(self)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay.relay_once(final=True), 3)
        await self.relay.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.db.close()
        if self._admin is not None:
            self._admin.stop()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        await self.start()
        await self._stopping.wait()
        await self.stop()


def run_service(settings: Settings, service: Service) -> None:
    """Runs a service until SIGINT or SIGTERM."""
    configure_logging(f"{settings.role}-service", settings.instance_id, settings.log_level)
    tracing.configure(settings.tracing, settings.instance_id)

    async def main() -> None:
        await ServiceHost(settings, service).run_until_signalled()

    try:
        asyncio.run(main())
    finally:
        tracing.shutdown()
