"""Process bootstrap shared by the four services: database + migrations, Kafka producer + outbox
relay, the gRPC server (health, reflection, interceptors), the admin HTTP port, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from abc import ABC, abstractmethod
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from godel_server.runtime.auth import RemoteKeyVerifier
from godel_server.runtime.config import Role, Settings
from godel_server.runtime.db import Database, ensure_postgres_database
from godel_server.runtime.interceptors import GodelServerInterceptor, KeyVerifier
from godel_server.runtime.kafka import ensure_topics, new_producer, wait_for_kafka
from godel_server.runtime.logs import configure_logging
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.outbox import OutboxRelay
from godel_server.runtime.publisher import EventPublisher

log = logging.getLogger(__name__)

HEALTH_CHECK_SECONDS = 5.0


class Service(ABC):
    """One deployable: which gRPC services it serves, its migrations, and its start/stop hooks."""

    role: Role
    grpc_services: tuple[str, ...]
    migrations: Path

    def verifier(self, host: ServiceHost) -> KeyVerifier:
        return RemoteKeyVerifier(host.settings.service_addrs["cluster"], host.settings.auth_cache_seconds)

    @abstractmethod
    def register(self, host: ServiceHost) -> None:
        """Adds the servicers to `host.server`."""

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
        self.service = service
        self.db = Database(settings.database_url)
        self.producer = new_producer(settings.kafka_bootstrap, settings.instance_id)
        self.relay = OutboxRelay(self.db, self.producer, settings.outbox_poll_seconds)
        self.publisher = EventPublisher(self.relay)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server = grpc.aio.server(
            interceptors=[GodelServerInterceptor(service.verifier(self))],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        self._stopping = asyncio.Event()
        self._health_task: asyncio.Task[None] | None = None
        self.bound_port = 0

    async def prepare_database(self) -> None:
        if not self.db.is_sqlite:
            await ensure_postgres_database(self.settings.database_url)
        await upgrade(self.db, self.service.migrations)

    async def start(self) -> None:
        s = self.settings
        log.info("starting", extra={"role": s.role, "database": self.db.engine.url.render_as_string()})
        await self.prepare_database()
        await wait_for_kafka(s.kafka_bootstrap, timeout=120)
        await ensure_topics(s.kafka_bootstrap, s.kafka_partitions)
        await self.producer.start()
        self.relay.start()
        self.service.register(self)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                *self.service.grpc_services,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self.bound_port = self.server.add_insecure_port(s.grpc_address)
        if self.bound_port == 0:
            raise RuntimeError(f"cannot bind gRPC port {s.grpc_address}")
        await self.service.start(self)
        await self.server.start()
        if s.admin_port:
            start_http_server(s.admin_port, addr=s.bind_host)
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
        await self.service.stop(self)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay.relay_once(final=True), 3)
        await self.relay.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.db.close()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        await self.start()
        await self._stopping.wait()
        await self.stop()


def run_service(settings: Settings, service: Service) -> None:
    configure_logging(f"{settings.role}-service", settings.instance_id, settings.log_level)

    async def main() -> None:
        await ServiceHost(settings, service).run_until_signalled()

    asyncio.run(main())
