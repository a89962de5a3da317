"""``client.events``: query stored events, follow the live stream (durable subscriptions too), and
publish events of your own (EventService).

Type patterns: ``agent:*`` matches every agent event, ``workflow:step:*`` every step event, an
empty list every event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypedDict, TypeVar, Unpack

from google.protobuf.message import Message

from godel.v1 import event_pb2, event_service_pb2
from godel_client.enums import BackpressureLike, backpressure
from godel_client.methods import Mode, SubClient, by_id, paged, stream, unary
from godel_client.service import to_struct

_Named = TypeVar("_Named", bound=Message)
_Named_co = TypeVar("_Named_co", bound=Message, covariant=True)


class Filters(TypedDict, total=False):
    """Which events: each given attribute must match (None or absent: any)."""

    agent_id: str | None
    team_id: str | None
    workflow_id: str | None
    correlation_id: str | None
    trace_id: str | None
    source: str | None


class SubscribeOptions(Filters, total=False):
    """Where a subscription starts, how it is kept, and how its buffer behaves."""

    from_sequence: int | None
    subscription: str | None
    heartbeat_seconds: int | None
    backpressure: BackpressureLike | None
    buffer_size: int | None


class QueryOptions(Filters, total=False):
    """Which stored events, in which order."""

    after_sequence: int | None
    since: datetime | None
    until: datetime | None
    descending: bool
    page_size: int


def _filter(
    request: event_service_pb2.SubscribeEventsRequest | event_service_pb2.QueryEventsRequest, filters: Filters
) -> None:
    """Sets the filter fields, which both requests name alike."""
    request.agent_id = filters.get("agent_id") or ""
    request.team_id = filters.get("team_id") or ""
    request.workflow_id = filters.get("workflow_id") or ""
    request.correlation_id = filters.get("correlation_id") or ""
    request.trace_id = filters.get("trace_id") or ""
    request.source_component = filters.get("source") or ""


def subscribe_request(
    patterns: Iterable[str] = (), **options: Unpack[SubscribeOptions]
) -> event_service_pb2.SubscribeEventsRequest:
    """Follows the live event stream: the events matching ``patterns`` and the filters.

    ``from_sequence`` replays the stored events after that sequence first. ``subscription`` names a
    durable subscription: the server keeps its cursor, so subscribing again with the same name
    resumes after the last event delivered (the first subscribe creates it with these filters).
    ``backpressure`` (``sliding``, ``drop`` or ``block``) and ``buffer_size`` say what the server
    does when this subscriber falls behind. Heartbeats are skipped.

    A stream cut by the network or a restarting service is reopened by itself, after the last
    event seen (from the start of the live stream when none was seen yet; by name for a durable
    subscription), so no event is lost or repeated. The iterator ends when the server ends the
    stream cleanly and raises :class:`~godel_client.errors.GodelError` when it ends it with an
    error, or when it cannot be reopened for a while. Closing the iterator cancels the call.
    """
    strategy = options.get("backpressure")
    request = event_service_pb2.SubscribeEventsRequest(
        pattern=list(patterns),
        from_sequence=options.get("from_sequence"),
        subscription_name=options.get("subscription") or "",
        heartbeat_seconds=options.get("heartbeat_seconds") or 0,
        backpressure=backpressure(strategy)
        if strategy is not None
        else event_service_pb2.BACKPRESSURE_STRATEGY_UNSPECIFIED,
        buffer_size=options.get("buffer_size") or 0,
    )
    _filter(request, options)
    return request


class EventCursor:
    """Where a subscription has got to, so that a reopened one continues right after it.

    The position is the sequence of the last event seen. Before the first event it is where the
    stream started: ``from_sequence`` when one was given, else (a live subscription) the newest
    sequence the server announced in its first heartbeat, which it sends once the subscription is
    registered. A durable subscription with no event seen yet reopens by its name alone: the
    server's cursor knows.
    """

    def __init__(self, request: event_service_pb2.SubscribeEventsRequest) -> None:
        self._request = request
        self.position: int | None = request.from_sequence if request.HasField("from_sequence") else None
        self._from_first_heartbeat = self.position is None and not request.subscription_name

    def seen(self, message: event_service_pb2.SubscribeEventsResponse) -> None:
        kind = message.WhichOneof("item")
        if kind == "event":
            self.position = max(self.position or 0, message.event.sequence)
        elif kind == "heartbeat" and self._from_first_heartbeat and self.position is None:
            self.position = message.heartbeat.last_sequence
        self._from_first_heartbeat = False

    def request(self) -> event_service_pb2.SubscribeEventsRequest:
        again = event_service_pb2.SubscribeEventsRequest()
        again.CopyFrom(self._request)
        if self.position is not None:
            again.from_sequence = self.position  # the server sends the events after it
        return again


def _event(message: event_service_pb2.SubscribeEventsResponse) -> event_pb2.Event | None:
    return message.event if message.WhichOneof("item") == "event" else None


def query_request(
    types: Iterable[str] = (), **options: Unpack[QueryOptions]
) -> event_service_pb2.QueryEventsRequest:
    """Stored events matching ``types`` and the filters, oldest first (``descending``: newest
    first), fetched page by page as the iterator is consumed. ``since``/``until`` bound the event
    time, ``after_sequence`` the sequence."""
    request = event_service_pb2.QueryEventsRequest(
        type=list(types),
        after_sequence=options.get("after_sequence") or 0,
        order=event_service_pb2.SORT_ORDER_DESCENDING
        if options.get("descending")
        else event_service_pb2.SORT_ORDER_ASCENDING,
        page_size=options.get("page_size", 100),
    )
    _filter(request, options)
    since, until = options.get("since"), options.get("until")
    if since is not None:
        request.start_time.FromDatetime(since)
    if until is not None:
        request.end_time.FromDatetime(until)
    return request


def _publish(
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    agent_id: str | None = None,
    team_id: str | None = None,
    workflow_id: str | None = None,
    correlation_id: str | None = None,
    source: str | None = None,
    id: str | None = None,
) -> event_service_pb2.PublishEventRequest:
    """Publishes a client event of a namespaced ``type`` (``deploy:finished``); it travels through
    Kafka like the services' own. ``id`` (a UUID) makes publishing idempotent. Returns the event's
    id."""
    return event_service_pb2.PublishEventRequest(
        type=type,
        payload=to_struct(payload),
        metadata=event_pb2.EventMetadata(
            agent_id=agent_id or "",
            team_id=team_id or "",
            workflow_id=workflow_id or "",
            correlation_id=correlation_id or "",
        ),
        source=event_pb2.EventSource(component=source or ""),
        id=id or "",
    )


class _ByName(Protocol[_Named_co]):
    def __call__(self, name: str) -> _Named_co: ...


def _by_name(request: type[_Named]) -> _ByName[_Named]:
    """The builder of a request that holds only a durable subscription's ``name``."""

    def build(name: str) -> _Named:
        return request(name=name)

    return build


class Events(SubClient[Mode]):
    """The event log of the mesh, and the durable subscriptions of the caller."""

    SERVICE = event_service_pb2.DESCRIPTOR.services_by_name["EventService"]

    query = paged(
        "QueryEvents", query_request, event_service_pb2.QueryEventsResponse, lambda page: page.events
    )
    subscribe = stream(
        "SubscribeEvents", subscribe_request, event_service_pb2.SubscribeEventsResponse, _event, EventCursor
    )
    publish = unary("PublishEvent", _publish, event_service_pb2.PublishEventResponse, lambda reply: reply.id)
    get = unary("GetEvent", by_id(event_service_pb2.GetEventRequest), event_pb2.Event)
    subscriptions = unary(
        "ListEventSubscriptions",
        event_service_pb2.ListEventSubscriptionsRequest,
        event_service_pb2.ListEventSubscriptionsResponse,
        lambda reply: list(reply.subscriptions),
    )
    get_subscription = unary(
        "GetEventSubscription",
        _by_name(event_service_pb2.GetEventSubscriptionRequest),
        event_service_pb2.EventSubscription,
    )
    delete_subscription = unary(
        "DeleteEventSubscription",
        _by_name(event_service_pb2.DeleteEventSubscriptionRequest),
        event_service_pb2.DeleteEventSubscriptionResponse,
        lambda _: None,
    )
