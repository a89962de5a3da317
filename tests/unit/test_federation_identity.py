"""How a call crosses between federation clusters (runtime/federation.py): only a peer may forward an
identity, and the forwarded call must be allowed to both the peer and the forwarded role; the peer
settings, the events a follower copies (agent/follower.py), and a team's placement reaching its
members' CreateAgent requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf.message import Message

from godel.v1 import agent_events_pb2, agent_pb2, event_pb2, team_pb2
from godel_server.agent.follower import ended, state_after
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.config import ConfigError, load_federation
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import PermissionDeniedError, ValidationError
from godel_server.runtime.events import new_event
from godel_server.runtime.federation import (
    AGENT_ID,
    FORWARDED_ROLE,
    ORIGIN_CLUSTER,
    forwarded_caller,
    forwarding_metadata,
)
from godel_server.runtime.statuses import LifecycleState
from godel_server.team.agents import member_request
from godel_server.team.teams.mapping import config_to_dict

PEER = Caller("key-peer", "cluster-a", "peer", ROLES["peer"])
GET_AGENT = "/godel.v1.AgentService/GetAgent"
CREATE_KEY = "/godel.v1.AuthService/CreateApiKey"


def forwarded_for(role: str) -> dict[str, str]:
    user = Caller("key-1", "alice", role)
    return dict(forwarding_metadata(user, "a", agent_id="5f0c2b8e-5b9c-4f39-9d4e-0b6a1f8a7d10"))


def test_a_peer_acts_for_the_forwarded_caller() -> None:
    caller = forwarded_caller(PEER, forwarded_for("developer"), GET_AGENT)
    assert (caller.user_id, caller.role, caller.origin_cluster, caller.via_peer) == (
        "alice",
        "developer",
        "a",
        "key-peer",
    )
    assert caller.credential == ""  # nothing to present further


def test_the_call_must_be_allowed_to_the_peer_and_to_the_forwarded_role() -> None:
    with pytest.raises(PermissionDeniedError, match="may not create key"):
        forwarded_caller(PEER, forwarded_for("admin"), CREATE_KEY)  # admin may; the peer may not
    with pytest.raises(PermissionDeniedError, match="may not create agent"):
        forwarded_caller(PEER, forwarded_for("viewer"), "/godel.v1.AgentService/CreateAgent")


def test_only_a_peer_may_forward_and_only_known_roles() -> None:
    admin = Caller("key-admin", "root", "admin", ROLES["admin"])
    with pytest.raises(PermissionDeniedError, match="only a federation peer"):
        forwarded_caller(admin, forwarded_for("admin"), GET_AGENT)
    with pytest.raises(PermissionDeniedError, match="unknown forwarded role"):
        forwarded_caller(PEER, {**forwarded_for("admin"), FORWARDED_ROLE: "peer"}, GET_AGENT)
    with pytest.raises(ValidationError):
        forwarded_caller(PEER, {**forwarded_for("admin"), AGENT_ID: "not-a-uuid"}, GET_AGENT)
    with pytest.raises(ValidationError):
        forwarded_caller(PEER, {FORWARDED_ROLE: "admin"}, GET_AGENT)  # no origin cluster
    itself = forwarded_caller(PEER, {ORIGIN_CLUSTER: "a"}, GET_AGENT)
    assert itself.role == "peer" and itself.origin_cluster == "a"


def test_peer_settings(tmp_path: Path) -> None:
    key = tmp_path / "b.key"
    key.write_text("godel_sk_secret\n")
    peers = json.dumps([{"name": "b", "endpoint": "10.0.0.2:7373", "credentialFile": str(key)}])
    settings = load_federation({"GODEL_CLUSTER_NAME": "a", "GODEL_FEDERATION_PEERS": peers})
    peer = settings.peer("b")
    assert settings.enabled and peer is not None and peer.credential() == "godel_sk_secret"
    assert "secret" not in repr(settings)
    for bad in ("{}", "[{}]", json.dumps([{"name": "b", "endpoint": "nohost", "credentialFile": "/k"}])):
        with pytest.raises(ConfigError, match="GODEL_FEDERATION_PEERS"):
            load_federation({"GODEL_FEDERATION_PEERS": bad})
    with pytest.raises(ConfigError, match="DEGRADED_AFTER"):
        load_federation({"GODEL_CLUSTER_DEGRADED_AFTER": "100", "GODEL_CLUSTER_OFFLINE_AFTER": "50"})
    with pytest.raises(ConfigError, match="GODEL_CLUSTER_ROUTING"):
        load_federation({"GODEL_CLUSTER_ROUTING": "fastest"})


def event(data: Message) -> event_pb2.Event:
    return new_event(data, partition_key="agent-1", component="agent-service")


def moved(to: agent_pb2.LifecycleState.ValueType) -> agent_pb2.AgentTransition:
    return agent_pb2.AgentTransition(agent_id="agent-1", to_state=to)


def test_the_follower_reads_the_agents_state_from_its_events() -> None:
    initializing = LifecycleState.INITIALIZING
    assert state_after(event(agent_events_pb2.AgentSpawned()), initializing) == initializing
    start = event(agent_events_pb2.AgentStarted(transition=moved(agent_pb2.LIFECYCLE_STATE_EXECUTING)))
    started = state_after(start, initializing)
    assert started == LifecycleState.EXECUTING and not ended(start, started)
    kill = event(agent_events_pb2.AgentKilled(transition=moved(agent_pb2.LIFECYCLE_STATE_KILLED)))
    assert ended(kill, state_after(kill, started))
    failed = moved(agent_pb2.LIFECYCLE_STATE_FAILED)
    retried = event(agent_events_pb2.AgentFailed(transition=failed, final=False))
    assert state_after(retried, started) == LifecycleState.FAILED
    assert not ended(retried, LifecycleState.FAILED)
    assert ended(event(agent_events_pb2.AgentFailed(transition=failed, final=True)), LifecycleState.FAILED)
    assert ended(event(agent_events_pb2.AgentDeleted(agent_id="agent-1")), started)


def test_a_teams_placement_goes_with_each_member() -> None:
    placement = agent_pb2.AgentPlacement(region="eu-west-1", min_capacity=2, features=["gpu"])
    stored = config_to_dict(team_pb2.TeamConfig(size=2, placement=placement))  # as the team row keeps it
    request = member_request("member-1", None, "t", {"placement": stored["placement"]})
    assert request.placement == placement
    assert not member_request("member-2", None, "t", {}).HasField("placement")
