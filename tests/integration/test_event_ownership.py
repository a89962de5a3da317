"""Events and references on a real mesh (spec §3.4, §6.2): an agent's events reach its owner, the
members of its owner's user team (developers read events with scope `team`) and admins, and no
one else, through QueryEvents, GetEvent, gRPC subscriptions (durable ones too), Server-Sent
Events and the WebSocket; a task can be queued only in a team, and given only to an agent, its
creator may read, and an agent made only in such a team."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from websockets.asyncio.client import connect

from tests.conftest import RunningMesh
from tests.integration.auth_helpers import Person, person, team_of
from tests.integration.event_readers import grpc_subscriber, sse_subscriber
from tests.integration.team_helpers import ok
from tests.waits import poll

# A durable subscription is a gRPC one with a name: the same stream, with a stored cursor.
TRANSPORTS = ("grpc", "durable", "sse", "websocket")


@dataclass
class Reader:
    """One live subscriber: the events it received (as JSON), until its own probe arrived."""

    name: str
    key: str
    transport: str
    probe: str = field(default_factory=lambda: str(uuid.uuid4()))
    events: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    failure: list[BaseException] = field(default_factory=list)

    def take(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("id") == self.probe:
            self.done.set()
            self.stop.set()

    def spawned(self) -> set[str]:
        """The agents whose `agent:spawn` this reader received."""
        return {e["agentSpawned"]["agent"]["id"] for e in self.events if e.get("type") == "agent:spawn"}


def run(godel: RunningMesh, reader: Reader, marker: str) -> threading.Thread:
    def body() -> None:
        try:
            if reader.transport in ("grpc", "durable"):
                grpc_subscriber(
                    godel,
                    "*",
                    lambda e: reader.take(json_format.MessageToDict(e)),
                    reader.ready,
                    reader.stop,
                    correlation_id=marker,
                    key=reader.key,
                    subscription_name=f"own-{marker[-12:]}" if reader.transport == "durable" else "",
                )
            elif reader.transport == "sse":
                sse_subscriber(
                    godel, "*", reader.take, reader.ready, reader.stop, correlation_id=marker, key=reader.key
                )
            else:
                asyncio.run(websocket_subscriber(godel, reader, marker))
        except BaseException as exc:  # reported by the test
            reader.failure.append(exc)
            reader.ready.set()
            reader.done.set()

    thread = threading.Thread(target=body, name=f"{reader.name}-{reader.transport}", daemon=True)
    thread.start()
    return thread


async def websocket_subscriber(godel: RunningMesh, reader: Reader, marker: str) -> None:
    headers = {"X-API-Key": reader.key}
    async with connect(godel.mesh.events_ws_url, additional_headers=headers) as ws:
        request = {"patterns": ["*"], "filters": {"correlationId": marker}, "subscriptionId": "s"}
        await ws.send(json.dumps({"id": "sub", "type": "subscribe", "timestamp": 0, "payload": request}))
        while not reader.stop.is_set():
            doc = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if doc["type"] == "response" and doc.get("metadata", {}).get("correlationId") == "sub":
                assert doc["payload"]["success"] is True, doc
                reader.ready.set()
            elif doc["type"] == "event":
                event = dict(doc["payload"])
                if event.get("type") == "agent:spawn":  # WebSocket: the typed payload is `data`
                    event["agentSpawned"] = event["data"]
                reader.take(event)


def spawn(godel: RunningMesh, who: Person, marker: str, command: tuple[str, ...] = ("true",)) -> str:
    body = {"task": "ownership", "config": {"runtime": "command", "command": list(command)}}
    with godel.http(who.key) as http:
        made = http.post("/api/v1/agents", json=body, headers={"x-correlation-id": marker})
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def publish_probe(godel: RunningMesh, key: str, probe: str, marker: str) -> None:
    """A client event of `key`'s user, stored after everything stored so far."""
    body = {"id": probe, "type": "probe:done", "metadata": {"correlationId": marker}}
    with godel.http(key) as http:
        reply = http.post("/api/v1/events", json=body)
    assert reply.status_code == 200, reply.text


def spawned_by_query(godel: RunningMesh, key: str, marker: str) -> set[str]:
    with godel.http(key) as http:
        page = ok(http.get("/api/v1/events", params={"correlationId": marker, "type": "agent:spawn"}))
    return {e["agentSpawned"]["agent"]["id"] for e in page.get("events", [])}


def test_agent_events_reach_their_owner_its_user_team_and_admins_on_every_read_path(
    godel: RunningMesh,
) -> None:
    alice, carol, bob = (person(godel, "developer") for _ in range(3))
    team_of(godel, alice, carol)
    team_of(godel, bob)
    people: dict[str, str] = {
        "alice": alice.key,
        "carol": carol.key,
        "bob": bob.key,
        "admin": godel.admin_key,
    }
    marker = f"own-events-{uuid.uuid4().hex}"
    readers = [Reader(name, key, t) for name, key in people.items() for t in TRANSPORTS]
    threads = [run(godel, r, marker) for r in readers]
    for reader in readers:
        assert reader.ready.wait(60), f"{reader.name}/{reader.transport} did not subscribe"
        assert not reader.failure, (reader.name, reader.transport, reader.failure)

    mine, theirs = spawn(godel, alice, marker), spawn(godel, bob, marker)
    poll(
        lambda: spawned_by_query(godel, godel.admin_key, marker),
        lambda found: found == {mine, theirs},
        30,
        "both agent:spawn events stored",
    )
    # Each reader's own probe comes after both spawns: once it arrives, the reader has had every
    # earlier event it may see.
    for reader in readers:
        publish_probe(godel, reader.key, reader.probe, marker)
    expected = {"alice": {mine}, "carol": {mine}, "bob": {theirs}, "admin": {mine, theirs}}
    for reader in readers:
        assert reader.done.wait(60), f"{reader.name}/{reader.transport} never got its probe"
        assert not reader.failure, (reader.name, reader.transport, reader.failure)
        assert reader.spawned() == expected[reader.name], (reader.name, reader.transport)
    for thread in threads:
        thread.join(10)

    for name, key in people.items():
        assert spawned_by_query(godel, key, marker) == expected[name], name
    with godel.http(godel.admin_key) as admin:
        events = ok(admin.get("/api/v1/events", params={"agentId": mine, "type": "agent:spawn"}))["events"]
    event_id = events[0]["id"]
    for key, status in ((alice.key, 200), (carol.key, 200), (bob.key, 404)):
        with godel.http(key) as http:
            assert http.get(f"/api/v1/events/{event_id}").status_code == status
    # A client event is its publisher's, whatever owner its request names.
    forged = str(uuid.uuid4())
    body = {"id": forged, "type": "probe:forged", "metadata": {"ownerUserId": alice.id}}
    with godel.http(bob.key) as http:
        assert http.post("/api/v1/events", json=body).status_code == 200
    poll(lambda: _status(godel, bob.key, forged), lambda status: status == 200, 30, "bob's event stored")
    assert _status(godel, alice.key, forged) == 404


def _status(godel: RunningMesh, key: str, event_id: str) -> int:
    with godel.http(key) as http:
        return http.get(f"/api/v1/events/{event_id}").status_code


def test_tasks_and_agents_point_only_at_teams_and_agents_their_creator_may_read(godel: RunningMesh) -> None:
    alice, carol, bob, otto = (
        person(godel, role) for role in ("developer", "developer", "developer", "operator")
    )
    team_of(godel, alice, carol, otto)
    with godel.http(otto.key) as http:  # developers read teams; operators make them
        team = ok(http.post("/api/v1/teams", json={"name": f"red-{uuid.uuid4().hex[:6]}", "task": "t"}))
    # Agents that stay live (killed at the end), so only ownership decides.
    agent = spawn(godel, alice, f"tasks-{uuid.uuid4().hex}", ("sleep", "300"))
    own_agent = spawn(godel, bob, f"tasks-{uuid.uuid4().hex}", ("sleep", "300"))

    with godel.http(bob.key) as http:
        queued = http.post("/api/v1/tasks", json={"title": "in their team", "teamId": team["id"]})
        assert queued.status_code == 404 and "team_id" in queued.json()["message"], queued.text
        task = ok(http.post("/api/v1/tasks", json={"title": "mine"}))
        given = http.post(f"/api/v1/tasks/{task['id']}/assign", json={"agentId": agent})
        assert given.status_code == 404 and "agent_id" in given.json()["message"], given.text
        assert ok(http.get(f"/api/v1/tasks/{task['id']}"))["status"] == "TASK_STATUS_PENDING"  # unchanged
        assigned = ok(http.post(f"/api/v1/tasks/{task['id']}/assign", json={"agentId": own_agent}))
        assert assigned["agentId"] == own_agent
        listed = ok(http.get("/api/v1/tasks", params={"teamId": team["id"]})).get("tasks", [])
        assert listed == []
        # An agent in their team neither (the agent service asks the team service as bob).
        body = {
            "task": "x",
            "teamId": team["id"],
            "config": {"runtime": "command", "command": ["sleep", "300"]},
        }
        refused = http.post("/api/v1/agents", json=body)
        assert refused.status_code == 404 and "team_id" in refused.json()["message"], refused.text
        body["parentSessionId"] = ok(http.get(f"/api/v1/agents/{own_agent}")).get("sessionId") or str(
            uuid.uuid4()
        )
    with godel.http(carol.key) as http:  # her user team's team: readable, so she may use it
        mine = ok(http.post("/api/v1/tasks", json={"title": "ours", "teamId": team["id"]}))
        assert mine["teamId"] == team["id"] and mine["ownerUserId"] == carol.id
        hers = ok(http.post("/api/v1/agents", json={**body, "parentSessionId": ""}))["id"]
        assert http.post("/api/v1/agents", json=body).status_code == 404  # bob's session (or none)
    with godel.http() as admin:
        for agent_id in (agent, own_agent, hers):
            assert admin.post(f"/api/v1/agents/{agent_id}/kill", json={}).status_code == 200
