"""The team service's consumer of agent events (team/dispatch.py) skips what is none of its
business before any transaction (the events of an agent in no team and of no member, but its
usage), and a batch
costs its statements once, not once per event."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf import json_format, struct_pb2
from sqlalchemy import event, select

from godel.v1 import agent_events_pb2, agent_pb2, event_pb2, workflow_pb2
from godel_server.runtime.config import KafkaSettings, load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import AgentStatus, StepStatus
from godel_server.runtime.tables import processed_events
from godel_server.team import dispatch
from godel_server.team.agents import MEMBER_METADATA_KEY
from godel_server.team.budgets.ledger import BudgetLedger
from godel_server.team.dispatch import AgentEventConsumer
from godel_server.team.members import Members
from godel_server.team.models import MemberRow, MemberStatus, TeamAgentRow, WorkflowRow, WorkflowStepRow
from godel_server.team.tasks.queue import TaskQueue
from godel_server.team.teams.orchestrator import TeamOrchestrator
from godel_server.team.workflows.definition import validate
from godel_server.team.workflows.engine import WorkflowEngine
from tests.fakes.events import KafkaRecord, moved, spawned
from tests.fakes.members import InstantMembers, complete_event


def _consumer(db: Database, members: Members | None = None) -> AgentEventConsumer:
    settings = load_settings("team", {})
    publisher = EventPublisher(None)
    members = members or Members(db, None)  # type: ignore[arg-type]  # no agent calls in these tests
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


def usage(agent_id: str) -> event_pb2.Event:
    """`agent:usage` of an agent in no team."""
    data = agent_events_pb2.AgentUsage(agent_id=agent_id, cost=0.01)
    return new_event(data, partition_key=agent_id, component="agent-service", agent_id=agent_id)


def _member_agent(agent_id: str, member_id: str = "m-1") -> agent_pb2.Agent:
    metadata = struct_pb2.Struct()
    metadata.update({MEMBER_METADATA_KEY: member_id})
    return agent_pb2.Agent(id=agent_id, metadata=metadata)


async def test_the_events_of_an_agent_outside_every_team_cost_no_transaction(db: Database) -> None:
    consumer = _consumer(db)
    transactions: list[str] = []
    event.listen(db.engine.sync_engine, "begin", lambda conn: transactions.append("begin"))
    plain = "a" * 36
    skipped = [spawned(agent_pb2.Agent(id=plain)), moved("agent:start", plain, "running")]
    await consumer._process([KafkaRecord(e.SerializeToString(), offset=i) for i, e in enumerate(skipped)])
    assert transactions == []

    handled = [
        spawned(agent_pb2.Agent(id="b" * 36, team_id="t-1")),  # an agent of a team
        spawned(_member_agent("c" * 36)),  # a member's agent
        moved("agent:start", "d" * 36, "running"),  # an agent whose spawn this replica did not see
        usage(plain),  # charged to its owner's budgets
        moved("agent:complete", plain, "completed", team_id="t-1"),  # it joined a team
    ]
    await consumer._process([KafkaRecord(e.SerializeToString(), offset=i) for i, e in enumerate(handled)])
    assert transactions
    async with db.reader() as session:
        recorded = set((await session.scalars(select(processed_events.c.event_id))).all())
    assert recorded == {e.id for e in handled}


def test_the_consumer_skips_the_events_of_agents_it_saw_spawned_outside_every_team(db: Database) -> None:
    consumer = _consumer(db)
    assert not consumer.wants(spawned(agent_pb2.Agent(id="a")))
    assert not consumer.wants(moved("agent:complete", "a", "completed"))
    assert consumer.wants(usage("a"))
    assert consumer.wants(spawned(agent_pb2.Agent(id="b", team_id="t")))
    assert consumer.wants(spawned(_member_agent("c")))
    assert consumer.wants(moved("agent:complete", "d", "completed"))  # its spawn was not seen here
    assert consumer.wants(moved("agent:start", "a", "running", team_id="t"))  # joined a team
    assert consumer.wants(moved("agent:complete", "a", "completed"))  # and is followed from then on


def test_the_agents_remembered_outside_every_team_are_bounded(db: Database, monkeypatch: Any) -> None:
    monkeypatch.setattr(dispatch, "OUTSIDE_REMEMBERED", 2)
    consumer = _consumer(db)
    for agent_id in ("a", "b", "c"):
        consumer.wants(spawned(agent_pb2.Agent(id=agent_id)))
    assert consumer.wants(moved("agent:complete", "a", "completed"))  # forgotten: handled again
    assert not consumer.wants(moved("agent:complete", "c", "completed"))


class _Statements:
    """Each statement the database runs while listening: (first words, executemany)."""

    def __init__(self, db: Database) -> None:
        self.seen: list[tuple[str, bool]] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        words = statement.split()
        table = (
            words[words.index("FROM") + 1]
            if words[0] == "SELECT"
            else words[2 if words[0] == "INSERT" else 1]
        )
        self.seen.append((f"{words[0]} {table}", many))

    def count(self, what: str) -> int:
        return sum(1 for name, _ in self.seen if name == what)


async def test_a_batch_reads_its_members_and_team_agents_once_and_writes_each_table_together(
    db: Database,
) -> None:
    """Twenty steps of a workflow whose agents spawn, start and complete within one batch: the
    members, the team agents and the steps are read once for the batch (members.py `read_members`,
    TaskQueue `lock_agents`, WorkflowEngine `read_steps`), and the changes are flushed once, at the commit: the step rows' updates are
    one executemany, not twenty statements (the engine reads step rows without flushing first)."""
    width = 20
    members = InstantMembers(db)
    consumer = _consumer(db, members)
    definition = workflow_pb2.WorkflowDefinition(
        name="fan-in", runtime="command", command=["true"], max_concurrency=width
    )
    for i in range(width):
        definition.steps.append(workflow_pb2.StepDefinition(id=f"s{i}", task=f"part {i}"))
    definition.steps.append(
        workflow_pb2.StepDefinition(id="join", task="join", depends_on=[f"s{i}" for i in range(width)])
    )
    validate(definition)
    wf = WorkflowRow(
        id=str(uuid.uuid4()),
        name=definition.name,
        definition=json_format.MessageToDict(definition),
        status="pending",
        created_at=utcnow(),
    )
    engine = consumer._workflows
    async with db.session() as session:
        await engine.create(session, wf, definition)
    await engine.start(wf.id)
    launched = [members.queue.get_nowait() for _ in range(width)]
    assert members.queue.empty()
    agents = {m: str(uuid.uuid4()) for m in launched}
    batch = [spawned(_member_agent(agents[m], m)) for m in launched]
    batch += [moved("agent:start", agents[m], "running") for m in launched]
    batch += [complete_event(agents[m]) for m in launched]

    statements = _Statements(db)
    loads: list[str] = []

    def loaded(target: MemberRow, context: Any) -> None:
        loads.append("load")

    def refreshed(target: MemberRow, context: Any, attrs: Any) -> None:
        loads.append("refresh")

    event.listen(MemberRow, "load", loaded)
    event.listen(MemberRow, "refresh", refreshed)
    try:
        await consumer._process([KafkaRecord(e.SerializeToString(), offset=i) for i, e in enumerate(batch)])
    finally:
        event.remove(MemberRow, "load", loaded)
        event.remove(MemberRow, "refresh", refreshed)
    assert statements.count("SELECT members") == 2, statements.seen  # their owners, then read locked
    assert loads == ["load"] * width, "each member built from a row once, under its workflow's lock"
    assert statements.count("SELECT team_agents") == 1, statements.seen
    assert statements.count("SELECT workflows") == 1, statements.seen
    # The twenty steps read ahead together (WorkflowEngine.read_steps), then the join's row when
    # the last of them ends: not a read per event.
    assert statements.count("SELECT workflow_steps") == 2, statements.seen
    # The 21 step changes go in a few statements (SQLAlchemy sends consecutive rows with the same
    # columns as one executemany; here the join's start splits the completions in two at most).
    step_updates = [many for name, many in statements.seen if name == "UPDATE workflow_steps"]
    assert len(step_updates) <= 3 and step_updates.count(True) >= 1, statements.seen
    member_updates = [many for name, many in statements.seen if name == "UPDATE members"]
    assert len(member_updates) == 1 and member_updates[0], statements.seen
    # What the batch did, all of it: every step completed by its agent, the join launched.
    assert members.queue.qsize() == 1
    async with db.reader() as session:
        steps = {r.step_id: r for r in await session.scalars(select(WorkflowStepRow))}
        ended = (await session.scalars(select(MemberRow).where(MemberRow.step_id != "join"))).all()
    assert steps["join"].status == StepStatus.RUNNING
    assert {sid: (s.status, s.agent_id) for sid, s in steps.items() if sid != "join"} == {
        f"s{i}": (StepStatus.COMPLETED, agents[launched[i]]) for i in range(width)
    }
    assert {(m.status, m.agent_id) for m in ended} == {(MemberStatus.COMPLETED, a) for a in agents.values()}
    await engine.stop()


async def test_a_team_agent_spawned_in_a_batch_is_followed_by_its_later_events_in_it(db: Database) -> None:
    """The batch's team agents are read before its events are handled; an agent of a team that
    spawns within the batch gets its row then (runtime/row_locks.py `hold`), and the batch's next
    events of that agent find it."""
    consumer = _consumer(db)
    agent_id = "d" * 36
    batch = [
        spawned(agent_pb2.Agent(id=agent_id, team_id="t-1")),
        moved("agent:start", agent_id, "running"),
        moved("agent:complete", agent_id, "completed"),
    ]
    await consumer._process([KafkaRecord(e.SerializeToString(), offset=i) for i, e in enumerate(batch)])
    async with db.reader() as session:
        row = await session.get(TeamAgentRow, agent_id)
    assert row is not None and (row.team_id, row.status) == ("t-1", AgentStatus.COMPLETED)
