"""One request across the whole system: CreateAgent -> outbox -> Kafka -> event store -> query,
and live delivery to subscribers that were listening before (gRPC stream and SSE via Envoy)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from godel.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
)
from godel_server.event.store import EventStore
from godel_server.runtime.config import database_url_for
from godel_server.runtime.db import Database
from tests.conftest import RunningMesh
from tests.integration.event_readers import grpc_subscriber, sse_subscriber
from tests.waits import wait_for


def test_created_agent_event_is_stored_once_and_reaches_prior_subscribers(godel: RunningMesh) -> None:
    grpc_events: queue.Queue[Any] = queue.Queue()
    sse_events: queue.Queue[Any] = queue.Queue()
    grpc_ready, sse_ready, stop = threading.Event(), threading.Event(), threading.Event()
    content_types: list[str | None] = []
    threads = [
        threading.Thread(
            target=grpc_subscriber, args=(godel, "agent:*", grpc_events.put, grpc_ready, stop), daemon=True
        ),
        threading.Thread(
            target=sse_subscriber,
            args=(godel, "agent:*", sse_events.put, sse_ready, stop),
            kwargs={"opened": lambda response: content_types.append(response.headers.get("content-type"))},
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    assert grpc_ready.wait(15) and sse_ready.wait(15), "subscribers did not start"
    assert content_types == ["text/event-stream"]

    with godel.http() as http:
        agent = http.post("/api/v1/agents", json={"task": "emit an event"}).json()
        agent_id = agent["id"]

        def stored(kind: str = "agent:spawn") -> list[dict[str, Any]]:
            page: dict[str, list[dict[str, Any]]] = http.get(
                "/api/v1/events", params={"type": kind, "agentId": agent_id}
            ).json()
            return page.get("events", [])

        spawned = wait_for(stored, 20, "the agent:spawn event in the store")
        # The agent has no command, so it fails next. Its events share a Kafka partition and are
        # stored in order: once a later one is stored, a duplicate of agent:spawn would be too.
        wait_for(
            lambda: [e for e in stored("agent:*") if int(e["sequence"]) > int(spawned[0]["sequence"])],
            30,
            "a later event of the agent in the store",
        )
        events = stored()
        assert len(events) == 1, events
        event = events[0]
        assert event["type"] == "agent:spawn"
        assert event["metadata"]["agentId"] == agent_id
        # The typed payload (AgentSpawned) under its oneof field's JSON name; no free-form payload.
        assert event["agentSpawned"]["agent"]["id"] == agent_id and "payload" not in event
        assert event["agentSpawned"]["agent"]["status"] == "AGENT_STATUS_PENDING"
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
        pytest.fail("subscriber did not receive the event within 20s")

    live_grpc = first_for(grpc_events, lambda e: e.metadata.agent_id)
    live_sse = first_for(sse_events, lambda e: e["metadata"]["agentId"])
    stop.set()
    assert live_grpc.id == event["id"] and live_grpc.sequence == int(event["sequence"])
    assert live_sse["id"] == event["id"] and live_sse["type"] == "agent:spawn"
    assert (
        live_grpc.agent_spawned.agent.id == agent_id and live_sse["agentSpawned"]["agent"]["id"] == agent_id
    )


def test_subscriber_can_replay_from_a_sequence(godel: RunningMesh) -> None:
    with godel.http() as http:
        agent = http.post("/api/v1/agents", json={"task": "replay me"}).json()
        events = wait_for(
            lambda: http.get("/api/v1/events", params={"agentId": agent["id"]}).json().get("events"),
            20,
            "the agent's first stored event",
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
            20,
            "the published event in the store",
        )
        assert [e["id"] for e in stored] == [event_id]
        assert stored[0]["payload"] == {"marker": marker}


def test_events_stored_before_typed_payloads_stay_readable(godel: RunningMesh) -> None:
    """An event as the services stored it before payloads were typed (a Struct payload on a service
    type), written into the event store's database, reads back through QueryEvents, gRPC and REST."""
    agent_id = str(uuid.uuid4())
    old = event_pb2.Event(
        id=str(uuid.uuid4()),
        type="agent:delete",
        source=event_pb2.EventSource(component="agent-service", version="0.1.0"),
        metadata=event_pb2.EventMetadata(agent_id=agent_id),
        partition_key=agent_id,
    )
    old.timestamp.GetCurrentTime()
    old.payload.update({"agentId": agent_id, "status": "running"})

    async def store() -> None:
        db = Database(database_url_for("event", godel.mesh.env("event"), godel.mesh.home))
        try:
            async with db.session() as session:
                await EventStore(session).append([old])
        finally:
            await db.close()

    asyncio.run(store())
    with godel.channel() as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        page = stub.QueryEvents(
            event_service_pb2.QueryEventsRequest(agent_id=agent_id), metadata=godel.metadata(), timeout=10
        )
    assert [e.id for e in page.events] == [old.id]
    read = page.events[0]
    assert read.type == "agent:delete" and read.WhichOneof("data") is None
    assert json_format.MessageToDict(read.payload) == {"agentId": agent_id, "status": "running"}
    with godel.http() as http:
        events = http.get("/api/v1/events", params={"agentId": agent_id}).json()["events"]
    assert [(e["id"], e["payload"]) for e in events] == [(old.id, {"agentId": agent_id, "status": "running"})]
