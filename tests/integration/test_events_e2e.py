"""One request across the whole system: CreateAgent -> outbox -> Kafka -> event store -> query,
and live delivery to subscribers that were listening before (gRPC stream and SSE via Envoy)."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any

import grpc
import httpx
import pytest

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc, event_service_pb2, event_service_pb2_grpc
from tests.conftest import RunningMesh


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def grpc_subscriber(
    godel: RunningMesh, pattern: str, out: queue.Queue[Any], ready: threading.Event, stop: threading.Event
) -> None:
    channel = godel.channel()
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    call = stub.SubscribeEvents(
        event_service_pb2.SubscribeEventsRequest(pattern=[pattern], heartbeat_seconds=1),
        metadata=godel.metadata(),
    )
    try:
        for item in call:
            if item.HasField("heartbeat"):
                ready.set()
            elif item.HasField("event"):
                out.put(item.event)
            if stop.is_set():
                break
    except grpc.RpcError:
        pass
    finally:
        call.cancel()
        channel.close()


def sse_subscriber(
    godel: RunningMesh, pattern: str, out: queue.Queue[Any], ready: threading.Event, stop: threading.Event
) -> None:
    params: dict[str, str | int] = {"pattern": pattern, "heartbeatSeconds": 1}
    with (
        httpx.Client(
            base_url=godel.rest, headers=godel.headers(), timeout=httpx.Timeout(10, read=30)
        ) as http,
        http.stream("GET", "/api/v1/events/stream", params=params) as response,
    ):
        out.put(("content-type", response.headers.get("content-type")))
        for line in response.iter_lines():
            if line.startswith("data: "):
                item = json.loads(line[6:])
                if "heartbeat" in item:
                    ready.set()
                elif "event" in item:
                    out.put(item["event"])
            if stop.is_set():
                break


def test_created_agent_event_is_stored_once_and_reaches_prior_subscribers(godel: RunningMesh) -> None:
    grpc_events: queue.Queue[Any] = queue.Queue()
    sse_events: queue.Queue[Any] = queue.Queue()
    grpc_ready, sse_ready, stop = threading.Event(), threading.Event(), threading.Event()
    threads = [
        threading.Thread(
            target=grpc_subscriber, args=(godel, "agent:*", grpc_events, grpc_ready, stop), daemon=True
        ),
        threading.Thread(
            target=sse_subscriber, args=(godel, "agent:*", sse_events, sse_ready, stop), daemon=True
        ),
    ]
    for t in threads:
        t.start()
    assert grpc_ready.wait(15) and sse_ready.wait(15), "subscribers did not start"
    assert sse_events.get(timeout=1) == ("content-type", "text/event-stream")

    with godel.http() as http:
        agent = http.post("/api/v1/agents", json={"task": "emit an event"}).json()
        agent_id = agent["id"]

        def stored() -> list[dict[str, Any]]:
            page: dict[str, list[dict[str, Any]]] = http.get(
                "/api/v1/events", params={"type": "agent:spawn", "agentId": agent_id}
            ).json()
            return page.get("events", [])

        events = wait_for(stored, what="the agent:spawn event in the store")
        time.sleep(1.0)  # give a duplicate delivery the chance to show up
        events = stored()
        assert len(events) == 1, events
        event = events[0]
        assert event["type"] == "agent:spawn"
        assert event["metadata"]["agentId"] == agent_id
        assert event["payload"]["agent"]["id"] == agent_id
        assert int(event["sequence"]) > 0
        assert http.get(f"/api/v1/events/{event['id']}").json()["id"] == event["id"]

    def first_for(q: queue.Queue[Any], get_agent: Any) -> Any:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                item = q.get(timeout=0.5)
            except queue.Empty:
                continue
            if get_agent(item) == agent_id:
                return item
        pytest.fail("subscriber did not receive the event")

    live_grpc = first_for(grpc_events, lambda e: e.metadata.agent_id)
    live_sse = first_for(sse_events, lambda e: e["metadata"]["agentId"])
    stop.set()
    assert live_grpc.id == event["id"] and live_grpc.sequence == int(event["sequence"])
    assert live_sse["id"] == event["id"] and live_sse["type"] == "agent:spawn"


def test_subscriber_can_replay_from_a_sequence(godel: RunningMesh) -> None:
    with godel.http() as http:
        agent = http.post("/api/v1/agents", json={"task": "replay me"}).json()
        events = wait_for(
            lambda: http.get("/api/v1/events", params={"agentId": agent["id"]}).json().get("events"),
            what="stored event",
        )
    seq = int(events[0]["sequence"])
    with godel.channel() as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        call = stub.SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(
                pattern=["agent:spawn"], agent_id=agent["id"], from_sequence=seq - 1
            ),
            metadata=godel.metadata(),
            timeout=10,
        )
        replayed = next(item.event for item in call if item.HasField("event"))
        call.cancel()
    assert replayed.id == events[0]["id"]


def test_grpc_invalid_argument_carries_field_violations(godel: RunningMesh) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    for target in (godel.mesh.gateway_address, godel.mesh.address("agent")):
        with godel.channel(target) as channel:
            stub = agent_service_pb2_grpc.AgentServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.CreateAgent(
                    agent_service_pb2.CreateAgentRequest(task=""), metadata=godel.metadata(), timeout=10
                )
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(info.value)
            assert status is not None
            fields = []
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    fields += [v.field for v in bad.field_violations]
            assert fields == ["task"]
            with pytest.raises(grpc.RpcError) as unauth:
                stub.ListAgents(agent_service_pb2.ListAgentsRequest(), timeout=10)
            assert unauth.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_published_client_event_travels_through_kafka(godel: RunningMesh) -> None:
    marker = uuid.uuid4().hex
    with godel.http() as http:
        bad = http.post("/api/v1/events", json={"type": "NoNamespace", "payload": {}})
        assert bad.status_code == 400
        for reserved in ("agent:start", "run:requested", "budget:exceeded"):
            forged = http.post("/api/v1/events", json={"type": reserved, "payload": {}})
            assert forged.status_code == 400 and "reserved" in forged.json()["message"]
        published = http.post(
            "/api/v1/events",
            json={
                "type": "deploy:finished",
                "payload": {"marker": marker},
                "metadata": {"correlationId": marker},
            },
        )
        assert published.status_code == 200, published.text
        event_id = published.json()["id"]
        stored = wait_for(
            lambda: (
                http.get("/api/v1/events", params={"type": "deploy:*", "correlationId": marker})
                .json()
                .get("events")
            ),
            what="published event stored",
        )
        assert [e["id"] for e in stored] == [event_id]
        assert stored[0]["payload"] == {"marker": marker}
