"""Durable subscriptions: a named subscription keeps its cursor on the server, so a client that
reconnects (over gRPC or WebSocket) resumes right after the last event it was handed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import pytest
from websockets.sync.client import connect

from godel.v1 import event_service_pb2, event_service_pb2_grpc
from tests.conftest import RunningMesh
from tests.waits import poll


def publish(godel: RunningMesh, marker: str, n: int) -> list[str]:
    """Publishes n events of one aggregate (a workflow id, hence one Kafka partition: ordered)."""
    ids = []
    aggregate = str(uuid.uuid5(uuid.NAMESPACE_URL, marker))
    with godel.http() as http:
        for i in range(n):
            reply = http.post(
                "/api/v1/events",
                json={
                    "type": "durable:test",
                    "payload": {"i": i},
                    "metadata": {"correlationId": marker, "workflowId": aggregate},
                },
            )
            assert reply.status_code == 200, reply.text
            ids.append(reply.json()["id"])
    return ids


def read_events(
    godel: RunningMesh, request: event_service_pb2.SubscribeEventsRequest, n: int, key: str | None = None
) -> list[Any]:
    """Reads exactly n events from a gRPC subscription (n=0: until it is open), then disconnects.

    The server moves a durable cursor once the transport has taken an event; a cancel that races
    that (the client has the event, the server has not seen its write complete yet) leaves the
    event to be delivered again, at least once. So before disconnecting, wait until the server's
    cursor shows the last event read: what is tested is the resume, not that race."""
    got: list[Any] = []
    with godel.channel() as channel:
        call = event_service_pb2_grpc.EventServiceStub(channel).SubscribeEvents(
            request, metadata=godel.metadata(key), timeout=30
        )
        for item in call:
            if n == 0 and item.HasField("heartbeat"):
                break
            if item.HasField("event"):
                got.append(item.event)
                if len(got) == n:
                    break
        if request.subscription_name and got:
            wait_cursor(godel, request.subscription_name, got[-1].sequence, key)
        call.cancel()
    return got


def wait_cursor(godel: RunningMesh, name: str, sequence: int, key: str | None = None) -> None:
    poll(
        lambda: stub_call(
            godel, "GetEventSubscription", event_service_pb2.GetEventSubscriptionRequest(name=name), key
        ),
        lambda sub: sub.last_sequence >= sequence,
        15,
        f"the cursor of {name} to reach {sequence}",
        interval=0.05,
    )


def stub_call(godel: RunningMesh, method: str, request: Any, key: str | None = None) -> Any:
    with godel.channel() as channel:
        return getattr(event_service_pb2_grpc.EventServiceStub(channel), method)(
            request, metadata=godel.metadata(key), timeout=10
        )


def wait_subscription_idle(godel: RunningMesh, name: str) -> event_service_pb2.EventSubscription:
    """The subscription once the server has seen its client go (and saved its cursor)."""
    subscription: event_service_pb2.EventSubscription = poll(
        lambda: stub_call(
            godel, "GetEventSubscription", event_service_pb2.GetEventSubscriptionRequest(name=name)
        ),
        lambda sub: not sub.connected,
        20,
        f"subscription {name} to be disconnected",
    )
    return subscription


def test_grpc_durable_subscription_resumes_after_a_reconnect(godel: RunningMesh) -> None:
    marker, name = uuid.uuid4().hex, f"dur-{uuid.uuid4().hex[:8]}"
    first = publish(godel, marker, 3)
    start = event_service_pb2.SubscribeEventsRequest(
        pattern=["durable:*"], correlation_id=marker, subscription_name=name, from_sequence=0
    )
    handed = read_events(godel, start, 3)
    assert [e.id for e in handed] == first
    sub = wait_subscription_idle(godel, name)
    assert not sub.connected and list(sub.pattern) == ["durable:*"] and sub.correlation_id == marker
    assert sub.last_sequence == handed[-1].sequence, "the cursor is at the last event handed over"

    later = publish(godel, marker, 4)
    resume = event_service_pb2.SubscribeEventsRequest(subscription_name=name)  # filters come from the server
    got = read_events(godel, resume, 4)
    assert [e.id for e in got] == later, "resumed exactly after the last delivered event"
    assert wait_subscription_idle(godel, name).last_sequence == got[-1].sequence

    listed = stub_call(godel, "ListEventSubscriptions", event_service_pb2.ListEventSubscriptionsRequest())
    assert name in [s.name for s in listed.subscriptions]


def test_durable_subscription_conflicts_and_ownership(godel: RunningMesh) -> None:
    name = f"dur-{uuid.uuid4().hex[:8]}"
    read_events(
        godel, event_service_pb2.SubscribeEventsRequest(pattern=["durable:*"], subscription_name=name), 0
    )
    with pytest.raises(grpc.RpcError) as info:
        read_events(
            godel, event_service_pb2.SubscribeEventsRequest(pattern=["agent:*"], subscription_name=name), 1
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "subscription_name" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as bad:
        read_events(godel, event_service_pb2.SubscribeEventsRequest(subscription_name="no spaces allowed"), 1)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Another user does not see it.
    other = godel.create_key("developer")
    with pytest.raises(grpc.RpcError) as missing:
        stub_call(
            godel, "GetEventSubscription", event_service_pb2.GetEventSubscriptionRequest(name=name), other
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    wait_subscription_idle(godel, name)
    stub_call(godel, "DeleteEventSubscription", event_service_pb2.DeleteEventSubscriptionRequest(name=name))
    with pytest.raises(grpc.RpcError) as gone:
        stub_call(godel, "GetEventSubscription", event_service_pb2.GetEventSubscriptionRequest(name=name))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_rest_lists_durable_subscriptions(godel: RunningMesh) -> None:
    name = f"dur-{uuid.uuid4().hex[:8]}"
    read_events(godel, event_service_pb2.SubscribeEventsRequest(pattern=["x:*"], subscription_name=name), 0)
    wait_subscription_idle(godel, name)
    with godel.http() as http:
        listed = http.get("/api/v1/event-subscriptions").json()
        assert name in [s["name"] for s in listed["subscriptions"]]
        one = http.get(f"/api/v1/event-subscriptions/{name}")
        assert one.status_code == 200 and one.json()["pattern"] == ["x:*"]
        assert http.delete(f"/api/v1/event-subscriptions/{name}").status_code == 200
        assert http.get(f"/api/v1/event-subscriptions/{name}").status_code == 404


def test_websocket_durable_subscription_resumes_after_a_reconnect(godel: RunningMesh) -> None:
    marker, name = uuid.uuid4().hex, f"ws-{uuid.uuid4().hex[:8]}"
    first = publish(godel, marker, 2)
    ws_url = f"{godel.mesh.events_ws_url}?token={godel.admin_key}"

    def session(payload: dict[str, Any], n: int) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        with connect(ws_url) as ws:
            ws.send(json.dumps({"id": "s", "type": "subscribe", "timestamp": 0, "payload": payload}))
            while len(got) < n:
                doc = json.loads(ws.recv(timeout=20))
                if doc["type"] == "response":
                    assert doc["payload"]["success"], doc
                    assert doc["payload"]["data"]["subscriptionName"] == name
                elif doc["type"] == "event":
                    got.append(doc["payload"])
            if got:  # as in read_events: the resume is tested, not a cancel racing the cursor's write
                wait_cursor(godel, name, got[-1]["sequence"])
        return got

    payload = {
        "patterns": ["durable:*"],
        "filters": {"correlationId": marker},
        "subscriptionName": name,
        "fromSequence": 0,
    }
    assert [e["id"] for e in session(payload, 2)] == first
    wait_subscription_idle(godel, name)
    later = publish(godel, marker, 3)
    assert [e["id"] for e in session({"subscriptionName": name}, 3)] == later
