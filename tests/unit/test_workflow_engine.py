"""The workflow engine's handling of member events: those that outlive their workflow, and what a
completion reads."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf import json_format
from sqlalchemy import event

from godel.v1 import workflow_pb2
from godel_server.runtime.config import load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.team.members import Effects, Members, apply_agent_event
from godel_server.team.models import MemberRow, WorkflowRow
from godel_server.team.workflows.definition import validate
from godel_server.team.workflows.engine import WorkflowEngine
from tests.fakes.members import InstantMembers, complete_event
from tests.unit.conftest import outbox_events


async def test_the_end_of_an_agent_of_a_deleted_workflow_changes_nothing(db: Database) -> None:
    # DeleteWorkflow stops the running steps' agents; their end arrives as agent events after the
    # workflow is gone. Raising there failed the team service's consumer batch again and again,
    # and so stopped every team's and workflow's progress.
    settings = load_settings("team", {})
    engine = WorkflowEngine(settings, db, EventPublisher(None), Members(db, None))  # type: ignore[arg-type]
    member = MemberRow(id=str(uuid.uuid4()), workflow_id=str(uuid.uuid4()), step_id="build", attempt=0)
    effects = Effects()
    async with db.session() as session:
        await engine.member_changed(session, member, True, None, effects)
    assert await outbox_events(db) == []


class _Selects:
    """The tables each SELECT the database runs reads from, while listening."""

    def __init__(self, db: Database) -> None:
        self.tables: list[str] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        if words[0].upper() == "SELECT":
            self.tables.append(words[words.index("FROM") + 1])


async def _started(
    db: Database, definition: workflow_pb2.WorkflowDefinition
) -> tuple[InstantMembers, WorkflowEngine]:
    """A workflow of `definition` created and started: its first steps' members are queued."""
    validate(definition)
    members = InstantMembers(db)
    engine = WorkflowEngine(load_settings("team", {}), db, EventPublisher(None), members)
    row = WorkflowRow(
        id=str(uuid.uuid4()),
        name=definition.name,
        definition=json_format.MessageToDict(definition),
        status="pending",
        created_at=utcnow(),
    )
    async with db.session() as session:
        await engine.create(session, row, definition)
    await engine.start(row.id)
    return members, engine


async def _spawned(db: Database, members: InstantMembers, count: int) -> list[str]:
    """Takes `count` launched members and gives each an agent id, as agent:spawn stores it."""
    agents: list[str] = []
    async with db.session() as session:
        for _ in range(count):
            member = await session.get(MemberRow, members.queue.get_nowait())
            assert member is not None
            member.agent_id = str(uuid.uuid4())
            agents.append(member.agent_id)
    return agents


async def _completed(
    db: Database, engine: WorkflowEngine, members: InstantMembers, agents: list[str]
) -> None:
    """The agents complete, in one consumer transaction; the members it launches are queued."""
    effects = Effects()
    async with db.session() as session:
        for agent_id in agents:
            change = await apply_agent_event(session, complete_event(agent_id))
            assert change is not None and change.ended
            await engine.member_changed(session, change.member, True, None, effects)
    members.apply(effects)


async def test_a_completion_reads_its_workflow_its_member_and_the_steps_once_each(db: Database) -> None:
    """The team service's consumer transaction of an `agent:complete` (apply_agent_event, then the
    engine): the member's lock takes the workflow row, and the engine's own lock of it reads no row
    again (runtime/row_locks.py); the member is looked up with its row, then read once more under
    the workflow's lock; the ended step's row is read with the rows of the steps its end lets start."""
    definition = workflow_pb2.WorkflowDefinition(name="two", runtime="command", command=["true"])
    definition.steps.append(workflow_pb2.StepDefinition(id="a", task="first"))
    definition.steps.append(workflow_pb2.StepDefinition(id="b", task="second", depends_on=["a"]))
    members, engine = await _started(db, definition)
    agents = await _spawned(db, members, 1)
    selects = _Selects(db)
    await _completed(db, engine, members, agents)
    assert selects.tables.count("workflows") == 1, selects.tables
    assert selects.tables.count("members") == 2, selects.tables
    assert selects.tables.count("workflow_steps") == 1, selects.tables  # step a, with b it lets start
    assert members.queue.qsize() == 1  # step b was launched: the engine saw the completion
    await engine.stop()


async def test_the_second_completion_of_a_batch_reads_its_member_once(db: Database) -> None:
    """Two completions of one workflow in one consumer transaction: the first member is looked up,
    then read again under the workflow's lock; the second is looked up with the lock already held,
    so that read is the one under the lock (members.py `lock`)."""
    definition = workflow_pb2.WorkflowDefinition(name="join", runtime="command", command=["true"])
    for step in ("a", "b"):
        definition.steps.append(workflow_pb2.StepDefinition(id=step, task=step))
    definition.steps.append(workflow_pb2.StepDefinition(id="c", task="join", depends_on=["a", "b"]))
    members, engine = await _started(db, definition)
    agents = await _spawned(db, members, 2)
    selects = _Selects(db)
    await _completed(db, engine, members, agents)
    assert selects.tables.count("members") == 3, selects.tables
    assert selects.tables.count("workflows") == 1, selects.tables
    assert members.queue.qsize() == 1  # c was launched: both completions were seen
    await engine.stop()
