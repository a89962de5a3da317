"""Issue 12 §3 and §4 on the whole mesh (real Kafka, PostgreSQL, Envoy, a worker): no poison input
stops the pipeline, and config.env values never leave the agent service but for the worker (which
masks them in what it reports of the run).

After each poison input of the issue (2 MB of metadata, a 37-character agent id and a NUL in a
payload on PostgreSQL, an agent that prints a NUL, a YAML alias bomb), the bad input is refused
with an error that names the field and the limit, or quarantined as a dead letter with a
`system:poison` event, and the next normal agent or event completes within seconds. Operators
(and only they) list, retry and delete dead letters."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.protobuf import json_format

from godel.v1 import agent_pb2, agent_service_pb2, dead_letter_pb2, event_pb2, event_service_pb2
from godel_client import AsyncGodelClient, GodelClient, NotFoundError
from godel_server.runtime.config import KafkaSettings, load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import custom_event
from godel_server.runtime.kafka import new_producer
from godel_server.runtime.outbox import enqueue
from tests.conftest import RunningMesh, godel_cli
from tests.integration.agent_helpers import Agents, rpc_error
from tests.integration.auth_helpers import create_user, user_key, user_team
from tests.integration.team_helpers import ok, wait_workflow

L = agent_pb2
pytestmark = pytest.mark.timeout(240)
# "Within seconds": what the next normal input may take, on a loaded shared machine.
NEXT_WITHIN = 30.0


@pytest.fixture(scope="module")
def agents(godel: RunningMesh) -> Agents:
    return Agents(godel)


@pytest.fixture(scope="module")
def operator(godel: RunningMesh) -> Iterator[httpx.Client]:
    with godel.http(godel.create_key("operator")) as http:
        yield http


def next_agent_completes(agents: Agents) -> None:
    started = time.monotonic()
    agent = agents.spawn(["sh", "-c", "echo next"])
    done = agents.wait_final(agent.id, timeout=NEXT_WITHIN)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    assert time.monotonic() - started < NEXT_WITHIN


def violations(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, f"{response.status_code}: {response.text}"
    found: dict[str, str] = {}
    for detail in response.json()["details"]:
        for violation in detail.get("fieldViolations", []):
            found[violation["field"]] = violation["description"]
    return found


def wait_dead_letter(
    http: httpx.Client, service: str, match: str, timeout: float = NEXT_WITHIN
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        letters: list[dict[str, str]] = ok(http.get(f"/api/v1/dead-letters/{service}")).get("deadLetters", [])
        found = [d for d in letters if match in json.dumps(d)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no dead letter of {service} matching {match!r}: {letters}"
        time.sleep(0.3)


def stored(godel: RunningMesh, event_type: str, **filters: str) -> list[dict[str, object]]:
    with godel.http() as http:
        reply = ok(http.get("/api/v1/events", params={"type": event_type, "pageSize": 1000, **filters}))
    events: list[dict[str, object]] = reply.get("events", [])
    return events


def wait_stored(
    godel: RunningMesh, event_type: str, match: str, timeout: float = NEXT_WITHIN
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in stored(godel, event_type) if match in json.dumps(e)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {event_type} event matching {match!r}"
        time.sleep(0.3)


def produce_raw(godel: RunningMesh, *events: event_pb2.Event) -> None:
    """Sends events straight onto Kafka, a public surface the API does not guard."""

    async def produce() -> None:
        producer = new_producer(KafkaSettings(bootstrap=godel.kafka.bootstrap), "poison-test")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait("godel.custom.events", event.SerializeToString(), key=b"p")
        finally:
            await producer.stop()

    asyncio.run(produce())


# ------------------------------------------------------------------------------------ secrets


def test_a_viewer_never_sees_an_env_value_but_the_agent_gets_it(agents: Agents, godel: RunningMesh) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    script = 'printf %s "$API_TOKEN" | sha256sum; echo "token=$API_TOKEN"'
    # A viewer reads the agents of its user team (ownership): a developer of that team spawns it.
    developer, reader = create_user(godel, "developer"), create_user(godel, "viewer")
    user_team(godel, developer["id"], reader["id"])
    request = agent_service_pb2.CreateAgentRequest(
        task="env", config=agent_pb2.AgentConfig(command=["sh", "-c", script], env={"API_TOKEN": secret})
    )
    agent = agents.stub.CreateAgent(
        request, metadata=godel.metadata(user_key(godel, developer["id"], "developer")), timeout=15
    )
    assert dict(agent.config.env) == {"API_TOKEN": "********"}  # the create answer too
    done = agents.wait_final(agent.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    lines = [e.message for e in agents.logs(agent.id)]
    assert any(digest in line for line in lines)  # the run had the value
    assert "token=********" in lines and secret not in "\n".join(lines) + done.result
    agents.wait_events(agent.id, ["agent:spawn", "agent:complete"])

    viewer = user_key(godel, reader["id"], "viewer")
    with godel.http(viewer) as http:
        listed = ok(http.get("/api/v1/agents", params={"pageSize": 1000}))
        events = ok(http.get("/api/v1/events", params={"agentId": agent.id, "pageSize": 1000}))
        got = ok(http.get(f"/api/v1/agents/{agent.id}"))
    mine = [a for a in listed["agents"] if a["id"] == agent.id]
    assert mine and mine[0]["config"]["env"] == {"API_TOKEN": "********"}
    assert got["config"]["env"] == {"API_TOKEN": "********"}
    assert len(events["events"]) >= 2
    for document in (listed, events, got):
        assert secret not in json.dumps(document)
    # gRPC too: the events as stored (the bytes Kafka carried).
    query = event_service_pb2.QueryEventsRequest(agent_id=agent.id, page_size=1000)
    reply = agents.events.QueryEvents(query, metadata=godel.metadata(viewer), timeout=10)
    assert reply.events and all(secret.encode() not in e.SerializeToString() for e in reply.events)


# ------------------------------------------------------------------------------------ bounds


def test_two_megabytes_of_metadata_are_refused_naming_the_field(agents: Agents, godel: RunningMesh) -> None:
    request = agent_service_pb2.CreateAgentRequest(task="big", config=agent_pb2.AgentConfig(command=["true"]))
    request.metadata.update({"blob": "x" * 2_000_000})
    error = rpc_error(lambda: agents.stub.CreateAgent(request, metadata=agents.md, timeout=15))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata: must be at most 65536 bytes as protobuf" in str(error.details())
    with godel.http() as http:
        reply = http.post(
            "/api/v1/agents",
            json={"task": "big", "config": {"command": ["true"]}, "metadata": {"blob": "x" * 200_000}},
        )
    assert violations(reply)["metadata"].startswith("must be at most 65536 bytes")
    next_agent_completes(agents)


def test_an_event_larger_than_a_kafka_record_is_quarantined_and_the_next_agent_runs(
    agents: Agents, godel: RunningMesh, operator: httpx.Client
) -> None:
    """An event over Kafka's record limit that got into the outbox anyway (the bounds keep requests
    from making one): the relay quarantines it instead of retrying it for ever."""
    huge = custom_event(
        "agent:test-oversized", {"blob": "x" * 2_000_000}, partition_key="k", component="test"
    )
    database = Database(load_settings("agent", godel.mesh.env("agent")).database_url)

    async def add() -> None:
        try:
            async with database.session() as session:
                await enqueue(session, [huge])
        finally:
            await database.close()

    asyncio.run(add())
    letter = wait_dead_letter(operator, "agent", huge.id)
    assert letter["source"] == "outbox" and "MessageSizeTooLarge" in letter["error"]
    assert letter["service"] == "agent" and int(letter["sizeBytes"]) > 2_000_000
    wait_stored(godel, "system:poison", huge.id)
    next_agent_completes(agents)
    # A retry fails again (still too large) and says why; a delete discards it.
    retry = operator.post(f"/api/v1/dead-letters/agent/{letter['id']}:retry", json={})
    assert retry.status_code == 400 and "failed again" in retry.json()["message"]
    assert operator.delete(f"/api/v1/dead-letters/agent/{letter['id']}").status_code == 200
    left = ok(operator.get("/api/v1/dead-letters/agent")).get("deadLetters", [])
    assert all(d["id"] != letter["id"] for d in left)


def test_a_37_character_agent_id_and_a_nul_are_refused_or_quarantined(
    godel: RunningMesh, operator: httpx.Client
) -> None:
    with godel.http() as http:
        long_id = http.post(
            "/api/v1/events", json={"type": "poison:test", "metadata": {"agentId": "a" * 37}, "payload": {}}
        )
        nul = http.post("/api/v1/events", json={"type": "poison:test", "payload": {"text": "a\u0000b"}})
    assert violations(long_id) == {"metadata.agent_id": "must be at most 36 characters (has 37)"}
    assert violations(nul) == {"payload": "must not contain NUL characters (U+0000) in keys or strings"}

    # The same events straight onto Kafka.
    bad_id = custom_event("poison:test", {"n": 1}, partition_key="p", component="test", agent_id="b" * 37)
    with_nul = custom_event("poison:test", {"text": "before\u0000after"}, partition_key="p", component="test")

    produce_raw(godel, bad_id, with_nul)
    letter = wait_dead_letter(operator, "event", bad_id.id)
    assert letter["source"] == "godel-event-store"
    assert "agent_id: 37 characters, the store keeps at most 36" in letter["error"]
    wait_stored(godel, "system:poison", bad_id.id)
    # The NUL is stored as U+FFFD, and the next normal event is stored within seconds.
    kept = wait_stored(godel, "poison:test", with_nul.id)
    assert "before\ufffdafter" in json.dumps(kept, ensure_ascii=False)
    started = time.monotonic()
    with godel.http() as http:
        sent = ok(http.post("/api/v1/events", json={"type": "poison:next", "payload": {"ok": True}}))
    wait_stored(godel, "poison:next", sent["id"])
    assert time.monotonic() - started < NEXT_WITHIN


def test_an_agent_that_prints_a_nul_completes_and_so_does_the_next(agents: Agents) -> None:
    agent = agents.spawn(["sh", "-c", r"printf 'before\000after\n'; printf 'result\000end'"])
    done = agents.wait_final(agent.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    assert "before\ufffdafter" in [e.message for e in agents.logs(agent.id)]
    assert "\x00" not in done.result and "result\ufffdend" in done.result
    next_agent_completes(agents)


def test_an_alias_bomb_is_refused_and_the_next_workflow_completes(godel: RunningMesh) -> None:
    lines = ['l0: &l0 ["' + "x" * 100 + '"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 8)]
    bomb = "\n".join([*lines, "name: bomb", "steps: [{id: s, task: t}]"])
    with godel.http() as http:
        reply = http.post("/api/v1/workflows", json={"definitionText": bomb})
        assert violations(reply) == {
            "definitionText": "expands to more than 1048576 characters through YAML aliases"
        }
        started = time.monotonic()
        definition = {
            "name": "after-the-bomb",
            "command": ["sh", "-c", "echo {task}"],
            "steps": [{"id": "a", "task": "one"}, {"id": "b", "task": "two", "dependsOn": ["a"]}],
        }
        wf = ok(
            http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition), "start": True})
        )
        done = wait_workflow(http, wf["id"], timeout=NEXT_WITHIN * 2)
    assert done["status"] == "WORKFLOW_STATUS_COMPLETED", done
    assert time.monotonic() - started < NEXT_WITHIN * 2


# ------------------------------------------------------------------------------------ operators


def test_dead_letters_are_for_operators_and_the_cli_lists_them(godel: RunningMesh) -> None:
    for role in ("viewer", "developer"):
        with godel.http(godel.create_key(role)) as http:
            assert http.get("/api/v1/dead-letters/event").status_code == 403
    bad = custom_event("poison:test", {"n": 2}, partition_key="p", component="test", agent_id="c" * 37)
    produce_raw(godel, bad)
    operator_key = godel.create_key("operator")
    with GodelClient(godel.mesh.gateway_address, operator_key) as client:
        deadline = time.monotonic() + NEXT_WITHIN
        while not [d for d in client.dead_letters.of("event").list() if d.event_id == bad.id]:
            assert time.monotonic() < deadline, "the bad event is no dead letter of the event service"
            time.sleep(0.3)
        for service in ("agent", "team", "cluster"):
            assert all(d.service == service for d in client.dead_letters.of(service).list(page_size=5))
            assert bad.id not in [d.event_id for d in client.dead_letters.of(service).list()]
        with pytest.raises(NotFoundError):
            client.dead_letters.of("cluster").retry(999_999_999)

    async def listed_async() -> list[dead_letter_pb2.DeadLetter]:
        async with AsyncGodelClient(godel.mesh.gateway_address, operator_key) as client:
            return [d async for d in client.dead_letters.of("event").list(page_size=1)]

    [mine] = [d for d in asyncio.run(listed_async()) if d.event_id == bad.id]  # page by page
    assert mine.service == "event" and mine.source == "godel-event-store"
    listed = godel_cli(godel, "dead-letters", "list", "--json")
    document = json_format.Parse(listed.stdout, dead_letter_pb2.ListDeadLettersResponse())
    assert {d.service for d in document.dead_letters} <= {"agent", "team", "event", "cluster"}
    missing = godel_cli(godel, "dead-letters", "retry", "agent", "999999999", check=False)
    assert missing.returncode != 0 and "not found" in (missing.stdout + missing.stderr)


def test_the_limits_hold_for_event_ids_too(godel: RunningMesh) -> None:
    """A PublishEvent id is the events.id column (36 characters)."""
    with godel.http() as http:
        reply = http.post("/api/v1/events", json={"type": "poison:test", "id": "x" * 37, "payload": {}})
    assert violations(reply) == {"id": "must be at most 36 characters (has 37)"}
