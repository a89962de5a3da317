"""What a peer's answer to a forwarded call changes in this cluster's placement of the agent: a state
whose events are still followed is noted at once (a restarted agent is followed again), never an
end, which the follower notes when it copies the event that says so: noting the end at once stopped
the copying before the agent's `agent:kill` arrived. SQLite, a stand-in peer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from godel.v1 import agent_events_pb2, agent_pb2, agent_service_pb2
from godel_server.agent.federation import Federation
from godel_server.agent.follower import PeerEventFollower
from godel_server.agent.models import PlacementRow
from godel_server.agent.placements import PlacementRepository
from godel_server.agent.state import AgentStateStore
from godel_server.runtime.config import load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import LifecycleState

REPLICA = "agent-r1"
AGENT = "a1"


class Peer:
    """Answers each forwarded call with the next of `replies`."""

    def __init__(self) -> None:
        self.replies: list[agent_pb2.Agent] = []

    async def call(self, service: str, method: str, request: Any, caller: Any = None) -> agent_pb2.Agent:
        return self.replies.pop(0)


async def _placement(db: Database) -> PlacementRow:
    async with db.reader() as session:
        row = await PlacementRepository(session).get(AGENT)
    assert row is not None
    return row


async def _followed(db: Database) -> list[str]:
    async with db.reader() as session:
        return [agent_id for agent_id, _, _ in await PlacementRepository(session).followed()]


async def test_a_kill_through_this_cluster_leaves_the_end_to_the_follower(
    agent_db: Database, tmp_path: Path
) -> None:
    settings = load_settings("agent", {"GODEL_HOME": str(tmp_path), "GODEL_INSTANCE_ID": REPLICA})
    federation = Federation(settings, AgentStateStore(agent_db, EventPublisher(None), REPLICA))
    peer = Peer()
    federation.peer = lambda name: peer  # type: ignore[method-assign,assignment,return-value]
    now = utcnow()
    async with agent_db.session() as session:
        await PlacementRepository(session).add(
            PlacementRow(
                agent_id=AGENT,
                cluster="b",
                state=LifecycleState.EXECUTING,
                request={},
                creator={},
                event_sequence=3,
                replaced_from=[],
                created_at=now,
                updated_at=now,
            )
        )

    peer.replies.append(agent_pb2.Agent(id=AGENT, lifecycle_state=agent_pb2.LIFECYCLE_STATE_KILLED))
    reply = await federation.forward(
        await _placement(agent_db), "KillAgent", agent_service_pb2.KillAgentRequest(id=AGENT), None
    )
    assert reply.lifecycle_state == agent_pb2.LIFECYCLE_STATE_KILLED
    # Still followed: the peer's agent:kill has not been copied yet.
    assert (await _placement(agent_db)).state == LifecycleState.EXECUTING
    assert await _followed(agent_db) == [AGENT]

    # The follower copies the agent:kill: now the placement shows the end and is followed no more.
    follower = PeerEventFollower(agent_db, EventPublisher(None), federation, REPLICA)
    killed = new_event(
        agent_events_pb2.AgentKilled(
            transition=agent_pb2.AgentTransition(
                from_state=agent_pb2.LIFECYCLE_STATE_EXECUTING, to_state=agent_pb2.LIFECYCLE_STATE_KILLED
            )
        ),
        partition_key=AGENT,
        component="agent-service",
    )
    killed.sequence = 4
    assert await follower._copy(AGENT, "b", killed) is False
    assert (await _placement(agent_db)).state == LifecycleState.KILLED
    assert await _followed(agent_db) == []

    # A restart through this cluster makes the agent followed again at once.
    peer.replies.append(agent_pb2.Agent(id=AGENT, lifecycle_state=agent_pb2.LIFECYCLE_STATE_INITIALIZING))
    await federation.forward(
        await _placement(agent_db), "RestartAgent", agent_service_pb2.RestartAgentRequest(id=AGENT), None
    )
    assert (await _placement(agent_db)).state == LifecycleState.INITIALIZING
    assert await _followed(agent_db) == [AGENT]
