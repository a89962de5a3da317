"""The WebSocket protocol of spec §3.2 at /events, through the Envoy gateway: token in the query
string, subscribe with patterns and filters, live events, replay from a sequence, unsubscribe,
ping/pong, in-band errors, and `command` messages forwarded to the agent service."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import RunningMesh
from tests.waits import poll


def url(godel: RunningMesh, token: str | None) -> str:
    base = godel.mesh.events_ws_url
    return f"{base}?token={token}" if token is not None else base


def msg(kind: str, payload: dict[str, Any] | None = None, msg_id: str | None = None) -> str:
    return json.dumps(
        {
            "id": msg_id or uuid.uuid4().hex,
            "type": kind,
            "timestamp": int(time.time() * 1000),
            "payload": payload or {},
        }
    )


async def receive(ws: ClientConnection, timeout: float = 15.0) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return doc


async def receive_until(ws: ClientConnection, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail("timed out waiting for a WebSocket message")
        doc = await receive(ws, left)
        if predicate(doc):
            return doc


async def subscribe(ws: ClientConnection, payload: dict[str, Any]) -> dict[str, Any]:
    msg_id = uuid.uuid4().hex
    await ws.send(msg("subscribe", payload, msg_id))
    return await receive_until(ws, lambda d: d.get("metadata", {}).get("correlationId") == msg_id)


def spawn(godel: RunningMesh, task: str) -> str:
    with godel.http() as http:
        reply = http.post("/api/v1/agents", json={"task": task})
        assert reply.status_code == 200, reply.text
        return str(reply.json()["id"])


async def test_missing_or_wrong_token_gets_an_in_band_error_and_4401(godel: RunningMesh) -> None:
    for token in (None, "godel_sk_wrong"):
        async with connect(url(godel, token)) as ws:
            doc = await receive(ws)
            assert doc["type"] == "error"
            assert doc["payload"]["code"] == "UNAUTHENTICATED"
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_live_events_then_resume_from_a_sequence(godel: RunningMesh) -> None:
    async with connect(url(godel, godel.admin_key), subprotocols=["godel-events-v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "godel-events-v1"
        ok = await subscribe(ws, {"patterns": ["agent:*"], "subscriptionId": "mine"})
        assert ok["type"] == "response" and ok["payload"]["success"] is True, ok
        assert ok["payload"]["data"]["subscriptionId"] == "mine"
        agent_id = await asyncio.to_thread(spawn, godel, "websocket live")
        event = await receive_until(
            ws, lambda d: d["type"] == "event" and d["payload"]["metadata"].get("agentId") == agent_id
        )
    assert event["payload"]["type"] == "agent:spawn"
    # `data` is the typed payload (AgentSpawned) in protobuf JSON, not repeated under its oneof name.
    assert event["payload"]["data"]["agent"]["id"] == agent_id
    assert event["payload"]["data"]["agent"]["status"] == "AGENT_STATUS_PENDING"
    assert "agentSpawned" not in event["payload"] and "payload" not in event["payload"]
    assert event["metadata"] == {"subscriptionId": "mine", "sequence": event["payload"]["sequence"]}
    seq = int(event["payload"]["sequence"])

    # A new connection resumes from before that event: it is replayed, then live ones follow.
    async with connect(url(godel, godel.admin_key)) as ws:
        ok = await subscribe(
            ws, {"patterns": ["agent:spawn"], "filters": {"agentId": agent_id}, "fromSequence": seq - 1}
        )
        assert ok["payload"]["success"] is True
        replayed = await receive_until(ws, lambda d: d["type"] == "event")
        assert replayed["payload"]["id"] == event["payload"]["id"]
        assert replayed["payload"]["sequence"] == seq


def publish_probe(godel: RunningMesh, agent_id: str, kind: str) -> str:
    """Publishes a client event about `agent_id` (stored after everything stored so far)."""
    with godel.http() as http:
        reply = http.post("/api/v1/events", json={"type": kind, "metadata": {"agentId": agent_id}})
        assert reply.status_code == 200, reply.text
        return str(reply.json()["id"])


async def messages_until_event(ws: ClientConnection, event_id: str) -> list[dict[str, Any]]:
    """Every message received up to and including the event `event_id`."""
    got: list[dict[str, Any]] = []

    def is_it(doc: dict[str, Any]) -> bool:
        got.append(doc)
        return bool(doc["type"] == "event" and doc["payload"]["id"] == event_id)

    await receive_until(ws, is_it)
    return got


async def test_filters_keep_other_agents_events_out_and_unsubscribe_stops_delivery(
    godel: RunningMesh,
) -> None:
    mine = await asyncio.to_thread(spawn, godel, "ws filter mine")
    await asyncio.to_thread(spawn, godel, "ws filter other")
    async with connect(url(godel, godel.admin_key)) as ws:
        await subscribe(
            ws,
            {
                "patterns": ["agent:*", "wsprobe:*"],
                "filters": {"agentId": mine},
                "fromSequence": 0,
                "subscriptionId": "f",
            },
        )
        # Replay, then live events, in sequence order: the probe comes after every earlier match.
        before = await asyncio.to_thread(publish_probe, godel, mine, "wsprobe:before")
        delivered = [d for d in await messages_until_event(ws, before) if d["type"] == "event"]
        assert {d["payload"]["metadata"].get("agentId") for d in delivered} == {mine}
        assert {"agent:spawn", "wsprobe:before"} <= {d["payload"]["type"] for d in delivered}
        assert {d["metadata"]["subscriptionId"] for d in delivered} == {"f"}

        await ws.send(msg("unsubscribe", {"subscriptionId": "f"}, "u1"))
        done = await receive_until(ws, lambda d: d.get("metadata", {}).get("correlationId") == "u1")
        assert done["payload"] == {"success": True, "data": {"subscriptionId": "f"}}
        # An event `f` would match now reaches only `g`, subscribed after the unsubscribe.
        await subscribe(ws, {"patterns": ["wsprobe:*"], "filters": {"agentId": mine}, "subscriptionId": "g"})
        after = await asyncio.to_thread(publish_probe, godel, mine, "wsprobe:after")
        later = [d for d in await messages_until_event(ws, after) if d["type"] == "event"]
        assert [(d["metadata"]["subscriptionId"], d["payload"]["id"]) for d in later] == [("g", after)]

        await ws.send(msg("unsubscribe", {"subscriptionId": "f"}, "u2"))
        again = await receive_until(ws, lambda d: d.get("metadata", {}).get("correlationId") == "u2")
        assert again["payload"]["success"] is False and again["payload"]["error"]["code"] == "NOT_FOUND"


async def test_ping_pong_and_bad_messages_get_in_band_errors(godel: RunningMesh) -> None:
    async with connect(url(godel, godel.admin_key)) as ws:
        await ws.send(msg("ping", msg_id="ping-1"))
        pong = await receive(ws)
        assert pong["type"] == "pong" and pong["metadata"]["correlationId"] == "ping-1"
        assert pong["payload"]["lastSequence"] >= 0

        await ws.send("not json")
        bad = await receive(ws)
        assert bad["type"] == "error" and bad["payload"]["code"] == "INVALID_ARGUMENT"

        await ws.send(msg("subscribe", {"patterns": ["NoNamespace"], "backpressure": "fast"}, "s-bad"))
        bad = await receive(ws)
        assert bad["type"] == "error" and bad["metadata"]["correlationId"] == "s-bad"
        fields = {d["field"] for d in bad["payload"]["details"]}
        assert fields == {"payload.patterns[0]", "payload.backpressure"}

        await ws.send(json.dumps({"id": "x", "type": "launch"}))
        bad = await receive(ws)
        assert bad["payload"]["details"] == [
            {"field": "type", "description": bad["payload"]["details"][0]["description"]}
        ]
        # The connection survives bad messages.
        await ws.send(msg("ping", msg_id="ping-2"))
        assert (await receive(ws))["metadata"]["correlationId"] == "ping-2"


async def test_commands_are_forwarded_and_answered_with_a_correlated_response(godel: RunningMesh) -> None:
    with godel.http() as http:
        running = http.post(
            "/api/v1/agents",
            json={"task": "ws command", "config": {"runtime": "command", "command": ["sleep", "600"]}},
        )
        assert running.status_code == 200, running.text
        agent_id = running.json()["id"]
        await asyncio.to_thread(
            poll,
            lambda: http.get(f"/api/v1/agents/{agent_id}").json(),
            lambda a: a["status"] == "AGENT_STATUS_RUNNING",
            60,
            "the agent to run",
        )
        try:
            async with connect(url(godel, godel.admin_key)) as ws:
                await ws.send(msg("command", {"command": "agent:pause", "agentId": agent_id}, "cmd-1"))
                reply = await receive(ws)
                assert reply["type"] == "response" and reply["id"] == "cmd-1"
                assert reply["metadata"] == {"correlationId": "cmd-1"}
                assert reply["payload"]["success"] is True, reply
                assert reply["payload"]["data"]["agentId"] == agent_id
                assert http.get(f"/api/v1/agents/{agent_id}").json()["status"] == "AGENT_STATUS_PAUSED"

                # Refusals by the agent service come back in-band with its gRPC status.
                await ws.send(msg("command", {"command": "agent:pause", "agentId": agent_id}, "cmd-2"))
                reply = await receive(ws)
                assert reply["payload"]["success"] is False
                assert reply["payload"]["error"]["code"] == "FAILED_PRECONDITION", reply
                assert reply["payload"]["error"]["message"]

                missing = str(uuid.uuid4())
                await ws.send(msg("command", {"command": "agent:kill", "agentId": missing}, "cmd-3"))
                reply = await receive(ws)
                assert reply["payload"]["success"] is False
                assert reply["payload"]["error"]["code"] == "NOT_FOUND", reply

                await ws.send(msg("command", {"command": "agent:explode", "agentId": "nope"}, "cmd-4"))
                reply = await receive(ws)
                assert reply["payload"]["error"]["code"] == "INVALID_ARGUMENT"
                assert {d["field"] for d in reply["payload"]["error"]["details"]} == {"payload.command"}
        finally:
            http.post(f"/api/v1/agents/{agent_id}/kill", json={})


async def test_command_runs_with_the_callers_own_role(godel: RunningMesh) -> None:
    viewer = await asyncio.to_thread(godel.create_key, "viewer")
    agent_id = await asyncio.to_thread(spawn, godel, "ws viewer command")
    async with connect(url(godel, viewer)) as ws:
        ok = await subscribe(ws, {"patterns": ["agent:*"]})
        assert ok["payload"]["success"] is True  # viewers may read events
        await ws.send(msg("command", {"command": "agent:pause", "agentId": agent_id}, "v-1"))
        reply = await receive_until(ws, lambda d: d.get("metadata", {}).get("correlationId") == "v-1")
        assert reply["payload"]["success"] is False
        # Authorization runs before the agent service's handler: a viewer may not update agents.
        assert reply["payload"]["error"]["code"] == "PERMISSION_DENIED", reply


def test_other_paths_on_the_websocket_port_are_404(godel: RunningMesh) -> None:
    reply = httpx.get(f"http://127.0.0.1:{godel.mesh.ports.event_ws}/other", timeout=5)
    assert reply.status_code == 404
