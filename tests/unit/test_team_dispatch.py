"""The team service's consumer of agent events (team/dispatch.py) skips what is none of its
business before any transaction: the spawn of an agent in no team and of no member."""

from __future__ import annotations

from google.protobuf import struct_pb2
from sqlalchemy import event, select

from godel.v1 import agent_pb2
from godel_server.runtime.config import KafkaSettings, load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.tables import processed_events
from godel_server.team.agents import MEMBER_METADATA_KEY
from godel_server.team.budgets.ledger import BudgetLedger
from godel_server.team.dispatch import AgentEventConsumer
from godel_server.team.members import Members
from godel_server.team.tasks.queue import TaskQueue
from godel_server.team.teams.orchestrator import TeamOrchestrator
from godel_server.team.workflows.engine import WorkflowEngine
from tests.fakes.events import KafkaRecord, moved, spawned


def _consumer(db: Database) -> AgentEventConsumer:
    settings = load_settings("team", {})
    publisher = EventPublisher(None)
    members = Members(db, None)  # type: ignore[arg-type]  # no agent calls in these tests
    ledger = BudgetLedger(publisher, "team-1")
    return AgentEventConsumer(
        db,
        KafkaSettings(),
        client_id="t",
        members=members,
        teams=TeamOrchestrator(settings, db, publisher, members, ledger),
        workflows=WorkflowEngine(settings, db, publisher, members),
        tasks=TaskQueue(publisher, "team-1"),
        ledger=ledger,
        dead_letters=DeadLetterStore(db, component="team-service", instance="team-1"),
    )


def _member_agent(agent_id: str) -> agent_pb2.Agent:
    metadata = struct_pb2.Struct()
    metadata.update({MEMBER_METADATA_KEY: "m-1"})
    return agent_pb2.Agent(id=agent_id, metadata=metadata)


async def test_only_the_spawn_of_an_agent_outside_every_team_costs_no_transaction(db: Database) -> None:
    consumer = _consumer(db)
    transactions: list[str] = []
    event.listen(db.engine.sync_engine, "begin", lambda conn: transactions.append("begin"))
    plain = spawned(agent_pb2.Agent(id="a" * 36))
    await consumer._process([KafkaRecord(plain.SerializeToString())])
    assert transactions == []

    handled = [
        spawned(agent_pb2.Agent(id="b" * 36, team_id="t-1")),  # an agent of a team
        spawned(_member_agent("c" * 36)),  # a member's agent
        moved("agent:start", "a" * 36, "running"),  # any later event of any agent
    ]
    await consumer._process([KafkaRecord(e.SerializeToString(), offset=i) for i, e in enumerate(handled)])
    assert transactions
    async with db.reader() as session:
        recorded = set((await session.scalars(select(processed_events.c.event_id))).all())
    assert recorded == {e.id for e in handled}


def test_the_consumer_wants_every_event_but_a_plain_spawn(db: Database) -> None:
    consumer = _consumer(db)
    assert not consumer.wants(spawned(agent_pb2.Agent(id="a")))
    assert consumer.wants(spawned(agent_pb2.Agent(id="a", team_id="t")))
    assert consumer.wants(spawned(_member_agent("a")))
    assert consumer.wants(moved("agent:complete", "a", "completed"))
