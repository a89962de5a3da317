"""The event-service deployable: the event store, its Kafka ingest and live subscriptions."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import event_service_pb2, event_service_pb2_grpc
from godel_server.event.hub import SubscriptionHub
from godel_server.event.ingest import EventIngest
from godel_server.event.servicer import EventServicer
from godel_server.event.store import EventStore
from godel_server.runtime.host import Service, ServiceHost


class EventService(Service):
    role = "event"
    grpc_services = (event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,)
    migrations = Path(__file__).parent / "migrations"

    def __init__(self) -> None:
        self.hub = SubscriptionHub()
        self.ingest: EventIngest | None = None

    def register(self, host: ServiceHost) -> None:
        servicer = EventServicer(host.db, host.publisher, self.hub, instance=host.settings.instance_id)
        event_service_pb2_grpc.add_EventServiceServicer_to_server(servicer, host.server)

    async def start(self, host: ServiceHost) -> None:
        async with host.db.reader() as session:
            self.hub.last_published = await EventStore(session).last_sequence()
        self.ingest = EventIngest(
            host.db, host.settings.kafka_bootstrap, self.hub, client_id=host.settings.instance_id
        )
        self.ingest.start()

    async def stop(self, host: ServiceHost) -> None:
        if self.ingest:
            await self.ingest.stop()
