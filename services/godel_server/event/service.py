"""The event-service deployable: the event store, its Kafka ingest and live subscriptions. It runs
as several replicas: the ingest group splits the partitions, the store numbers every event once
(store.py), and each replica serves live subscribers from the store (fanout.py)."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import event_service_pb2_grpc
from godel_server.event.commands import CommandForwarder
from godel_server.event.durable import DurableSubscriptions
from godel_server.event.fanout import StoreFanout
from godel_server.event.hub import SubscriptionHub
from godel_server.event.ingest import EventIngest
from godel_server.event.maintenance import EventMaintenance
from godel_server.event.servicer import EventServicer
from godel_server.event.store import EventStore
from godel_server.event.ws_server import EventSocketServer
from godel_server.runtime.auth import RemoteKeyVerifier
from godel_server.runtime.host import Service, ServiceHost
from godel_server.runtime.interceptors import KeyVerifier
from godel_server.runtime.limits import UserSlots
from godel_server.runtime.tls import server_ssl_context


class EventService(Service):
    role = "event"
    migrations = Path(__file__).parent / "migrations"

    def __init__(self) -> None:
        self.hub = SubscriptionHub()
        self.ingest: EventIngest | None = None
        self.fanout: StoreFanout | None = None
        self.durable: DurableSubscriptions | None = None
        self.websocket: EventSocketServer | None = None
        self.commands: CommandForwarder | None = None
        self._verifier: RemoteKeyVerifier | None = None
        self.maintenance: EventMaintenance | None = None

    def verifier(self, host: ServiceHost) -> KeyVerifier:
        if self._verifier is None:
            s = host.settings
            self._verifier = RemoteKeyVerifier(s.service_addrs["cluster"], s.auth_cache_seconds, s.tls)
        return self._verifier

    def register(self, host: ServiceHost) -> None:
        self.hub.owners = UserSlots(host.settings.max_subscriptions_per_user, "live event subscriptions")
        self.durable = DurableSubscriptions(host.db)
        servicer = EventServicer(
            host.db, host.publisher, self.hub, self.durable, instance=host.settings.instance_id
        )
        servicer.dead_letters = host.dead_letters
        event_service_pb2_grpc.add_EventServiceServicer_to_server(servicer, host.server)

    async def start(self, host: ServiceHost) -> None:
        self.maintenance = EventMaintenance(host.db, host.settings.event_retention_days)
        await self.maintenance.run_once()  # today's partition exists before the first insert
        self.maintenance.start()
        async with host.db.reader() as session:
            self.hub.last_published = await EventStore(session).last_sequence()
        self.fanout = StoreFanout(host.db, self.hub, host.settings.event_fanout_poll_seconds)
        self.fanout.start()
        self.ingest = EventIngest(
            host.db,
            host.settings.kafka,
            self.fanout,
            client_id=host.settings.instance_id,
            dead_letters=host.dead_letters,
        )
        self.ingest.start()
        assert self.durable is not None
        self.durable.start()
        settings = host.settings
        if settings.event_ws_port:
            self.commands = CommandForwarder(settings.service_addrs["agent"], settings.tls)
            self.websocket = EventSocketServer(
                db=host.db,
                hub=self.hub,
                durable=self.durable,
                verifier=self.verifier(host),
                commands=self.commands,
                guard=host.guard,
                host=settings.bind_host,
                port=settings.event_ws_port,
                allowed_origins=settings.ws_allowed_origins,
                ssl=server_ssl_context(settings.tls) if settings.tls.enabled else None,
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
        if self.fanout:
            await self.fanout.stop()
        if self.maintenance:
            await self.maintenance.stop()
