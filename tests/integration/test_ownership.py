"""Ownership on a real mesh (spec §3.4, §6.2): an agent records its owner and user team; a
developer neither sees nor acts on another user's agent outside its team (REST 404, gRPC
NOT_FOUND); a viewer of the same team reads it but may not act on it (403, PERMISSION_DENIED); an
operator acts on its team's agents; an admin sees and does everything; lists are filtered, and
request ids are per user; a workflow's steps run as the user who started it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import httpx
import pytest

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc
from tests.conftest import RunningMesh
from tests.integration.auth_helpers import Person, person, team_of
from tests.integration.team_helpers import ok, steps, wait_workflow


def spawn(godel: RunningMesh, who: Person, label: str, request_id: str = "") -> dict[str, Any]:
    # The agent stays live (a long sleep, killed at the end of the test), so every action on it
    # is allowed by its state and only ownership decides.
    body: dict[str, Any] = {
        "task": "wait",
        "label": label,
        "config": {"runtime": "command", "command": ["sleep", "300"]},
    }
    if request_id:
        body["requestId"] = request_id
    with godel.http(who.key) as http:
        made = http.post("/api/v1/agents", json=body)
    assert made.status_code == 200, made.text
    agent: dict[str, Any] = made.json()
    return agent


def listed(http: httpx.Client, label: str) -> set[str]:
    page = http.get("/api/v1/agents", params={"label": label, "pageSize": 100})
    assert page.status_code == 200, page.text
    return {a["id"] for a in page.json().get("agents", [])}


ACTIONS = (("post", "kill"), ("post", "pause"), ("post", "restart"), ("delete", ""))
READS = ("", "/logs", "/transitions", "/sessions", "/events")


def act(http: httpx.Client, agent_id: str, verb: str, action: str) -> httpx.Response:
    path = f"/api/v1/agents/{agent_id}" + (f"/{action}" if action else "")
    return http.post(path, json={}) if verb == "post" else http.delete(path)


def test_owners_teams_and_roles_decide_who_sees_and_acts_on_an_agent(godel: RunningMesh) -> None:
    alice, bob = person(godel, "developer"), person(godel, "developer")  # bob: another team
    vera, otto = person(godel, "viewer"), person(godel, "operator")  # alice's team
    red = team_of(godel, alice, vera, otto)
    team_of(godel, bob)
    label = f"own-{uuid.uuid4().hex[:8]}"
    mine = spawn(godel, alice, label)
    assert mine["ownerUserId"] == alice.id and mine["ownerTeamId"] == red
    theirs = spawn(godel, bob, label)

    with godel.http(bob.key) as http:
        assert listed(http, label) == {theirs["id"]}
        for suffix in READS:
            answer = http.get(f"/api/v1/agents/{mine['id']}{suffix}")
            assert answer.status_code == 404, (suffix, answer.text)
        for verb, action in ACTIONS:
            answer = act(http, mine["id"], verb, action)
            assert answer.status_code == 404, (action, answer.text)
            assert mine["id"] in answer.json()["message"]

    with godel.http(vera.key) as http:  # a viewer of alice's team: reads, may not act
        assert listed(http, label) == {mine["id"]}
        for suffix in READS:
            assert http.get(f"/api/v1/agents/{mine['id']}{suffix}").status_code == 200, suffix
        assert http.get(f"/api/v1/agents/{theirs['id']}").status_code == 404
        for verb, action in ACTIONS:
            assert act(http, mine["id"], verb, action).status_code == 403, action

    with godel.http(otto.key) as http:  # an operator acts on its team's agents, not on others'
        assert listed(http, label) == {mine["id"]}
        paused = http.post(f"/api/v1/agents/{mine['id']}/pause", json={})
        assert paused.status_code == 200, paused.text
        assert http.post(f"/api/v1/agents/{theirs['id']}/pause", json={}).status_code == 404

    with godel.http() as admin:  # the admin sees and acts on everything
        assert listed(admin, label) == {mine["id"], theirs["id"]}
        assert admin.get(f"/api/v1/agents/{theirs['id']}/logs").status_code == 200

    # The refusals changed nothing: alice's agent is only paused (by her team's operator).
    with godel.http(alice.key) as http:
        now = http.get(f"/api/v1/agents/{mine['id']}").json()
        assert now["lifecycleState"] == "LIFECYCLE_STATE_PAUSED", now
        assert http.post(f"/api/v1/agents/{mine['id']}/kill", json={}).status_code == 200
        assert http.delete(f"/api/v1/agents/{mine['id']}").status_code == 200
    with godel.http() as admin:
        assert admin.delete(f"/api/v1/agents/{theirs['id']}").status_code == 200


def test_grpc_refuses_with_not_found_and_permission_denied(godel: RunningMesh) -> None:
    alice, bob, vera = person(godel, "developer"), person(godel, "developer"), person(godel, "viewer")
    team_of(godel, alice, vera)
    mine = spawn(godel, alice, f"own-{uuid.uuid4().hex[:8]}")
    with godel.channel() as channel:
        stub = agent_service_pb2_grpc.AgentServiceStub(channel)
        for key, code in (
            (bob.key, grpc.StatusCode.NOT_FOUND),
            (vera.key, grpc.StatusCode.PERMISSION_DENIED),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                stub.KillAgent(
                    agent_service_pb2.KillAgentRequest(id=mine["id"]),
                    metadata=godel.metadata(key),
                    timeout=15,
                )
            assert refused.value.code() == code, refused.value.details()
        with pytest.raises(grpc.RpcError) as hidden:
            stub.GetAgent(
                agent_service_pb2.GetAgentRequest(id=mine["id"]), metadata=godel.metadata(bob.key), timeout=15
            )
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as stream:
            for _ in stub.StreamAgentLogs(
                agent_service_pb2.StreamAgentLogsRequest(id=mine["id"]),
                metadata=godel.metadata(bob.key),
                timeout=15,
            ):
                pass
        assert stream.value.code() == grpc.StatusCode.NOT_FOUND
        seen = stub.GetAgent(
            agent_service_pb2.GetAgentRequest(id=mine["id"]), metadata=godel.metadata(vera.key), timeout=15
        )
        assert seen.owner_user_id == alice.id
    with godel.http() as admin:
        assert admin.delete(f"/api/v1/agents/{mine['id']}").status_code == 200


def test_request_ids_are_per_user(godel: RunningMesh) -> None:
    alice, bob = person(godel, "developer"), person(godel, "developer")
    label, request_id = f"own-{uuid.uuid4().hex[:8]}", f"req-{uuid.uuid4().hex}"
    first = spawn(godel, alice, label, request_id)
    assert spawn(godel, alice, label, request_id)["id"] == first["id"]  # idempotent for alice
    other = spawn(godel, bob, label, request_id)  # bob's own agent, not alice's
    assert other["id"] != first["id"] and other["ownerUserId"] == bob.id
    with godel.http() as admin:
        for agent in (first, other):
            assert admin.delete(f"/api/v1/agents/{agent['id']}").status_code == 200


def test_workflow_steps_run_as_the_user_who_started_the_workflow(godel: RunningMesh) -> None:
    alice, bob = person(godel, "developer"), person(godel, "developer")
    red = team_of(godel, alice)
    definition = {
        "name": f"mine-{uuid.uuid4().hex[:6]}",
        "runtime": "command",
        "command": ["sh", "-c", "{task}"],
        "steps": [{"id": "hello", "name": "hello", "task": "echo hello"}],
    }
    with godel.http(alice.key) as http:
        wf = ok(
            http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition), "start": True})
        )
        assert wf["ownerUserId"] == alice.id and wf["ownerTeamId"] == red
        done = wait_workflow(http, wf["id"])
        assert done["status"] == "WORKFLOW_STATUS_COMPLETED", done
        agent_id = steps(http, wf["id"])["hello"]["agentId"]
        # The step's agent was made by the team service's key, for alice: hers to read.
        agent = ok(http.get(f"/api/v1/agents/{agent_id}"))
        assert (agent["ownerUserId"], agent["ownerTeamId"]) == (alice.id, red)
        # Creating for someone else needs agent:create:all; nothing is created.
        label = f"own-{uuid.uuid4().hex[:8]}"
        forged = http.post("/api/v1/agents", json={"task": "x", "label": label, "ownerUserId": bob.id})
        assert forged.status_code == 403 and "owner_user_id" in forged.json()["message"], forged.text
    with godel.http(bob.key) as http:
        assert http.get(f"/api/v1/workflows/{wf['id']}").status_code == 404
        assert http.get(f"/api/v1/workflows/{wf['id']}/steps").status_code == 404
        assert http.post(f"/api/v1/workflows/{wf['id']}/cancel", json={}).status_code == 404
        assert http.get(f"/api/v1/agents/{agent_id}").status_code == 404
        assert wf["id"] not in {w["id"] for w in ok(http.get("/api/v1/workflows")).get("workflows", [])}
        # Naming alice's agent as a step's template does not reveal it either.
        borrowed = {**definition, "steps": [{"id": "s", "name": "s", "task": "t", "agent": agent_id}]}
        refused = http.post("/api/v1/workflows", json={"definitionText": json.dumps(borrowed)})
        assert refused.status_code == 400 and "does not exist" in refused.text, refused.text
    with godel.http() as admin:
        assert listed(admin, label) == set()
