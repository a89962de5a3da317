"""EventService: query, get, publish and live subscription over the event store. Every read shows
the caller only the events its `event:read` permission reaches (visibility.py); an event a client
publishes is owned by the publishing user."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC

import grpc
from google.protobuf import json_format

from godel.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc
from godel_server.event.durable import DurableSubscriptions
from godel_server.event.hub import SubscriptionHub
from godel_server.event.options import check_name, check_patterns, from_grpc
from godel_server.event.store import EventFilter, EventStore, attribute_filters
from godel_server.event.streaming import Beat, subscribe
from godel_server.event.visibility import Audience
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.deadletter_rpcs import DeadLetterRpcs
from godel_server.runtime.errors import EventNotFoundError
from godel_server.runtime.events import EVENT_TYPE_RE, custom_event
from godel_server.runtime.ownership import Owner, reach
from godel_server.runtime.pagination import PageRequest
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.topics import RESERVED_NAMESPACES
from godel_server.runtime.validation import Violations

COMPONENT = "event-service"
MAX_PAYLOAD_BYTES = 64 * 1024


class EventServicer(DeadLetterRpcs, event_service_pb2_grpc.EventServiceServicer):
    def __init__(
        self,
        db: Database,
        publisher: EventPublisher,
        hub: SubscriptionHub,
        durable: DurableSubscriptions,
        *,
        instance: str,
    ) -> None:
        self._db = db
        self._durable = durable
        self._publisher = publisher
        self._hub = hub
        self._instance = instance

    async def QueryEvents(
        self, request: event_service_pb2.QueryEventsRequest, context: grpc.aio.ServicerContext
    ) -> event_service_pb2.QueryEventsResponse:
        v = Violations()
        check_patterns("type", list(request.type), v)
        if request.after_sequence < 0:
            v.add("after_sequence", "must not be negative")
        v.raise_if_any()
        flt = EventFilter(
            types=tuple(request.type),
            **attribute_filters(request),
            start_time=request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None,
            end_time=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None,
        )
        descending = request.order == event_service_pb2.SORT_ORDER_DESCENDING
        page = PageRequest.of(
            request.page_size,
            request.page_token,
            ("events", flt, descending, request.after_sequence),
            (int,),
            default_size=100,
        )
        last = page.after[0] if page.after else None
        audience = Audience(reach())
        async with self._db.reader() as session:
            store = EventStore(session)
            if descending:
                events = await store.query(
                    flt,
                    audience=audience,
                    limit=page.limit,
                    after_sequence=request.after_sequence,
                    before_sequence=last,
                    descending=True,
                )
            else:
                events = await store.query(
                    flt,
                    audience=audience,
                    limit=page.limit,
                    after_sequence=max(last or 0, request.after_sequence),
                )
        rows, token = page.split(events, lambda e: (e.sequence,))
        return event_service_pb2.QueryEventsResponse(events=rows, next_page_token=token)

    async def GetEvent(
        self, request: event_service_pb2.GetEventRequest, context: grpc.aio.ServicerContext
    ) -> event_pb2.Event:
        v = Violations()
        v.require("id", request.id)
        v.raise_if_any()
        async with self._db.reader() as session:
            event = await EventStore(session).get(request.id, audience=Audience(reach()))
        if event is None:
            raise EventNotFoundError(request.id)
        return event

    async def PublishEvent(
        self, request: event_service_pb2.PublishEventRequest, context: grpc.aio.ServicerContext
    ) -> event_service_pb2.PublishEventResponse:
        v = Violations()
        v.require("type", request.type, max_len=100)
        if request.type and (not EVENT_TYPE_RE.match(request.type) or "*" in request.type):
            v.add("type", "must be namespaced: `<namespace>:<name>`, lower-case, no wildcards")
        elif (namespace := request.type.split(":", 1)[0]) in RESERVED_NAMESPACES:
            v.add(
                "type",
                f"namespace {namespace!r} is reserved for events of Godel services; use your own "
                "(e.g. `deploy:finished`)",
            )
        size = len(json.dumps(json_format.MessageToDict(request.payload)))
        if size > MAX_PAYLOAD_BYTES:
            v.add("payload", f"must be at most {MAX_PAYLOAD_BYTES} bytes as JSON (got {size})")
        v.uuid("id", request.id)
        v.raise_if_any()
        caller = current_caller()
        m = request.metadata
        event = custom_event(
            request.type,
            request.payload,
            partition_key=m.agent_id or m.team_id or m.workflow_id or "",
            component=request.source.component or "client",
            instance=request.source.instance,
            agent_id=m.agent_id,
            team_id=m.team_id,
            workflow_id=m.workflow_id,
            user_id=caller.user_id if caller else m.user_id,
            causation_id=m.causation_id,
            event_id=request.id or None,
            owner=Owner.of(caller),
        )
        if m.correlation_id:
            event.metadata.correlation_id = m.correlation_id
        if m.trace_id:
            event.metadata.trace_id = m.trace_id
        if request.source.version:
            event.source.version = request.source.version
        if not event.partition_key:
            event.partition_key = event.id
        async with self._db.session() as session:
            await self._publisher.publish(session, [event])
        return event_service_pb2.PublishEventResponse(id=event.id)

    async def SubscribeEvents(
        self, request: event_service_pb2.SubscribeEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        options = from_grpc(request)
        stream = subscribe(
            self._db,
            self._hub,
            self._durable,
            options,
            owner=_owner(),
            audience=Audience(reach()),
            name_field="subscription_name",
        )
        async for item in stream:
            if isinstance(item, Beat):
                yield _heartbeat(item.last_sequence)
            else:
                yield event_service_pb2.SubscribeEventsResponse(event=item)

    async def ListEventSubscriptions(
        self, request: event_service_pb2.ListEventSubscriptionsRequest, context: grpc.aio.ServicerContext
    ) -> event_service_pb2.ListEventSubscriptionsResponse:
        return event_service_pb2.ListEventSubscriptionsResponse(
            subscriptions=await self._durable.list(_owner())
        )

    async def GetEventSubscription(
        self, request: event_service_pb2.GetEventSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> event_service_pb2.EventSubscription:
        _require_name(request.name)
        return await self._durable.get(_owner(), request.name)

    async def DeleteEventSubscription(
        self, request: event_service_pb2.DeleteEventSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> event_service_pb2.DeleteEventSubscriptionResponse:
        _require_name(request.name)
        await self._durable.delete(_owner(), request.name)
        return event_service_pb2.DeleteEventSubscriptionResponse()


def _owner() -> str:
    """Durable subscriptions belong to the caller's user (its key id when the key has no user)."""
    caller = current_caller()
    if caller is None:
        return "anonymous"
    return caller.user_id or f"key:{caller.key_id}"


def _require_name(name: str) -> None:
    v = Violations()
    v.require("name", name)
    check_name("name", name, v)
    v.raise_if_any()


def _heartbeat(last_sequence: int) -> event_service_pb2.SubscribeEventsResponse:
    beat = event_service_pb2.Heartbeat(last_sequence=last_sequence)
    beat.time.GetCurrentTime()
    return event_service_pb2.SubscribeEventsResponse(heartbeat=beat)
