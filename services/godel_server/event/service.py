"""The event-service deployable: the event store, its Kafka ingest and live subscriptions."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import event_service_pb2, event_service_pb2_grpc
from godel_server.event.commands import CommandForwarder
from godel_server.event.durable import DurableSubscriptions
from godel_server.event.hub import SubscriptionHub
from godel_server.event.ingest import EventIngest
from godel_server.event.maintenance import EventMaintenance
from godel_server.event.servicer import EventServicer
from godel_server.event.store import EventStore
from godel_server.event.ws_server import EventSocketServer
from godel_server.runtime.auth import RemoteKeyVerifier
from godel_server.runtime.host import Service, ServiceHost
from godel_server.runtime.interceptors import KeyVerifier


class EventService(Service):
    role = "event"
    grpc_services = (event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,)
    migrations = Path(__file__).parent / "migrations"

    def __init__(self) -> None:
        self.hub = SubscriptionHub()
        self.ingest: EventIngest | None = None
        self.durable: DurableSubscriptions | None = None
        self.websocket: EventSocketServer | None = None
        self.commands: CommandForwarder | None = None
        self._verifier: RemoteKeyVerifier | None = None
        self.maintenance: EventMaintenance | None = None

    def verifier(self, host: ServiceHost) -> KeyVerifier:
        if self._verifier is None:
            self._verifier = RemoteKeyVerifier(
                host.settings.service_addrs["cluster"], host.settings.auth_cache_seconds
            )
        return self._verifier

    def register(self, host: ServiceHost) -> None:
        self.durable = DurableSubscriptions(host.db)
        servicer = EventServicer(
            host.db, host.publisher, self.hub, self.durable, instance=host.settings.instance_id
        )
        event_service_pb2_grpc.add_EventServiceServicer_to_server(servicer, host.server)

    async def start(self, host: ServiceHost) -> None:
        self.maintenance = EventMaintenance(host.db, host.settings.event_retention_days)
        await self.maintenance.run_once()  # today's partition exists before the first insert
        self.maintenance.start()
        async with host.db.reader() as session:
            self.hub.last_published = await EventStore(session).last_sequence()
        self.ingest = EventIngest(
            host.db, host.settings.kafka_bootstrap, self.hub, client_id=host.settings.instance_id
        )
        self.ingest.start()
        assert self.durable is not None
        self.durable.start()
        settings = host.settings
        if settings.event_ws_port:
            self.commands = CommandForwarder(settings.service_addrs["agent"])
            self.websocket = EventSocketServer(
                db=host.db,
                hub=self.hub,
                durable=self.durable,
                verifier=self.verifier(host),
                commands=self.commands,
                host=settings.bind_host,
                port=settings.event_ws_port,
            )
            await self.websocket.start()

    async def stop(self, host: ServiceHost) -> None:
        if self.websocket:
            await self.websocket.stop()
        if self.commands:
            await self.commands.close()
        if self.durable:
            await self.durable.stop()
        if self.ingest:
            await self.ingest.stop()
        if self.maintenance:
            await self.maintenance.stop()
