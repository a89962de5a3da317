"""Team-service replicas sharing teams and workflows (team/replicas.py) on one database: a replica
that commits a decision drives the row; the rows of a replica whose lease lapsed are adopted by a
live one, which makes the agent calls still owed (the same member ids: no second agent) and takes
the timers over; a replica restarted under its id adopts its own rows again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

import pytest
from google.protobuf import json_format
from sqlalchemy import select

from godel_server.runtime.config import load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import StepStatus, TeamStatus, WorkflowStatus
from godel_server.team.agents import AgentGateway
from godel_server.team.budgets.ledger import BudgetLedger
from godel_server.team.members import Effects, Members
from godel_server.team.models import MemberRow, MemberStatus, TeamRow, WorkflowRow, WorkflowStepRow
from godel_server.team.replicas import Driven, Replicas
from godel_server.team.teams.orchestrator import TeamOrchestrator
from godel_server.team.teams.strategies import RUNNING
from godel_server.team.workflows.definition import parse_and_validate
from godel_server.team.workflows.engine import WorkflowEngine
from godel_server.team.workflows.scheduler import UNDERWAY

PIPELINE = """
name: two steps
steps:
  - {id: build, task: "build it"}
  - {id: test, dependsOn: [build], task: "test it"}
"""


class RecordedMembers(Members):
    """Members that record the agent calls instead of making them."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, cast(AgentGateway, None))
        self.launched: list[str] = []
        self.killed: list[str] = []

    def apply(self, effects: Effects) -> None:
        self.launched += effects.launch
        self.killed += [agent_id for agent_id, _ in effects.kill]
        for callback in effects.after:
            callback()


@dataclass
class Replica:
    name: str
    members: RecordedMembers
    workflows: WorkflowEngine
    teams: TeamOrchestrator
    replicas: Replicas
    stopped: list[object] = field(default_factory=list)


def replica(db: Database, name: str) -> Replica:
    settings = load_settings("team", {"GODEL_INSTANCE_ID": name, "GODEL_TEAM_LEASE_SECONDS": "30"})
    members = RecordedMembers(db)
    publisher = EventPublisher(None)
    workflows = WorkflowEngine(settings, db, publisher, members)
    teams = TeamOrchestrator(settings, db, publisher, members, BudgetLedger(publisher, name))
    replicas = Replicas(db, settings)
    replicas.drive(Driven("team", TeamRow, RUNNING, MemberRow.team_id, teams.adopt))
    replicas.drive(Driven("workflow", WorkflowRow, UNDERWAY, MemberRow.workflow_id, workflows.adopt))
    return Replica(name, members, workflows, teams, replicas)


@pytest.fixture
async def pair(db: Database) -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = replica(db, "team-a"), replica(db, "team-b")
    await a.replicas.lease.renew()
    await b.replicas.lease.renew()
    yield a, b
    for r in (a, b):
        await r.workflows.stop()
        await r.teams.stop()


async def started_workflow(db: Database, engine: WorkflowEngine) -> str:
    definition = parse_and_validate(PIPELINE)
    wf = WorkflowRow(
        id=str(uuid.uuid4()),
        name=definition.name,
        definition=json_format.MessageToDict(definition),
        status=WorkflowStatus.PENDING,
        context={},
        results={},
        progress=0,
        version=0,
        created_at=utcnow(),
        meta={},
    )
    async with db.session() as session:
        await engine.create(session, wf, definition)
    await engine.start(wf.id)
    return wf.id


async def driver(db: Database, model: type[TeamRow] | type[WorkflowRow], row_id: str) -> str | None:
    async with db.reader() as session:
        return await session.scalar(select(model.replica).where(model.id == row_id))


async def step_members(db: Database, workflow_id: str) -> list[MemberRow]:
    async with db.reader() as session:
        return list(
            (await session.scalars(select(MemberRow).where(MemberRow.workflow_id == workflow_id))).all()
        )


async def test_a_live_replicas_workflow_stays_with_it(db: Database, pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    workflow_id = await started_workflow(db, a.workflows)
    assert await driver(db, WorkflowRow, workflow_id) == "team-a"
    assert await b.replicas.claim() == 0
    assert await driver(db, WorkflowRow, workflow_id) == "team-a"
    assert b.members.launched == []


async def test_a_dead_replicas_workflow_moves_with_its_owed_launch(
    db: Database, pair: tuple[Replica, Replica]
) -> None:
    a, b = pair
    workflow_id = await started_workflow(db, a.workflows)
    [build] = await step_members(db, workflow_id)
    assert a.members.launched == [build.id] and build.status == MemberStatus.LAUNCHING
    await a.replicas.lease.release()  # as if killed: its lease lapsed

    assert await b.replicas.claim() == 1
    assert await driver(db, WorkflowRow, workflow_id) == "team-b"
    # The same member: CreateAgent is idempotent by its id, so the step never gets a second agent.
    assert b.members.launched == [build.id]
    assert [m.id for m in await step_members(db, workflow_id)] == [build.id]
    assert await b.replicas.claim() == 0  # adopted once


async def test_the_old_replicas_timer_leaves_a_moved_workflow_alone(
    db: Database, pair: tuple[Replica, Replica]
) -> None:
    a, b = pair
    workflow_id = await started_workflow(db, a.workflows)
    await a.replicas.lease.release()
    await b.replicas.claim()
    async with db.reader() as session:
        before = await session.scalar(select(WorkflowRow.version).where(WorkflowRow.id == workflow_id))
        # A retry due now: the wake-up of the replica that drives the workflow would start it.
        step = await session.scalar(
            select(WorkflowStepRow).where(
                WorkflowStepRow.workflow_id == workflow_id, WorkflowStepRow.step_id == "build"
            )
        )
        assert step is not None
    async with db.session() as session:
        row = await session.get(WorkflowStepRow, step.id)
        assert row is not None
        row.status = StepStatus.RETRYING
        row.next_attempt_at = utcnow() - timedelta(seconds=1)
        wf = await session.get(WorkflowRow, workflow_id)
        assert wf is not None
        wf.version += 1  # as the engine does when it changes steps
        before = wf.version
    await a.workflows.wake(workflow_id)
    async with db.reader() as session:
        after = await session.scalar(select(WorkflowRow.version).where(WorkflowRow.id == workflow_id))
        status = await session.scalar(select(WorkflowStepRow.status).where(WorkflowStepRow.id == step.id))
    assert (after, status) == (before, StepStatus.RETRYING)
    assert await driver(db, WorkflowRow, workflow_id) == "team-b"

    await b.workflows.wake(workflow_id)
    async with db.reader() as session:
        status = await session.scalar(select(WorkflowStepRow.status).where(WorkflowStepRow.id == step.id))
    assert status == StepStatus.RUNNING  # retried by the replica that drives it


async def test_a_decision_moves_the_workflow_to_the_replica_that_made_it(
    db: Database, pair: tuple[Replica, Replica]
) -> None:
    a, b = pair
    workflow_id = await started_workflow(db, a.workflows)
    [build] = await step_members(db, workflow_id)
    await b.workflows.pause(workflow_id)
    assert await driver(db, WorkflowRow, workflow_id) == "team-b"
    # B adopted it: the launch A may not have made yet is made again (same member).
    assert b.members.launched == [build.id]


async def test_a_restarted_replica_adopts_its_own_rows_again(
    db: Database, pair: tuple[Replica, Replica]
) -> None:
    a, _ = pair
    workflow_id = await started_workflow(db, a.workflows)
    [build] = await step_members(db, workflow_id)
    again = replica(db, "team-a")  # same id, empty memory
    await again.replicas.start()
    try:
        assert again.members.launched == [build.id]
        assert await driver(db, WorkflowRow, workflow_id) == "team-a"
    finally:
        await again.replicas.stop()
        await again.workflows.stop()


async def test_a_dead_replicas_team_moves_with_its_owed_calls(
    db: Database, pair: tuple[Replica, Replica]
) -> None:
    a, b = pair
    now = utcnow()
    team = TeamRow(
        id=str(uuid.uuid4()),
        name="t",
        config={"timeoutMinutes": 5},
        execution_strategy="parallel",
        status=TeamStatus.ACTIVE,
        task="x",
        progress=0,
        results={},
        budget_consumed=0.0,
        created_at=now,
        updated_at=now,
        started_at=now,
        meta={},
        replica="team-a",
    )

    def member(status: MemberStatus, *, agent_id: str | None = None, stop: bool = False) -> MemberRow:
        return MemberRow(
            id=str(uuid.uuid4()),
            team_id=team.id,
            role="worker",
            task="x",
            status=status,
            agent_id=agent_id,
            stop_requested=stop,
            spec={},
            created_at=now,
        )

    launching, stopping, running = (
        member(MemberStatus.LAUNCHING),
        member(MemberStatus.RUNNING, agent_id="agent-stopping", stop=True),
        member(MemberStatus.RUNNING, agent_id="agent-running"),
    )
    async with db.session() as session:
        session.add_all([team, launching, stopping, running])
    await a.replicas.lease.release()

    assert await b.replicas.claim() == 1
    assert await driver(db, TeamRow, team.id) == "team-b"
    assert b.members.launched == [launching.id]
    assert b.members.killed == ["agent-stopping"]
