"""Requests that point at another object (a workflow's team and its steps' agent selectors, a new
agent's parent session) reach only objects their caller may read: NOT_FOUND naming the field
otherwise, as for an object that does not exist."""

from __future__ import annotations

import uuid

import pytest

from godel.v1 import workflow_pb2, workflow_service_pb2
from godel_server.agent.models import AgentRow, SessionRow
from godel_server.agent.references import References
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.context import Caller, caller_var, method_var
from godel_server.runtime.db import Database
from godel_server.runtime.errors import ReferenceNotFoundError
from godel_server.runtime.events import utcnow
from godel_server.runtime.ownership import Owner
from godel_server.runtime.statuses import SessionStatus
from godel_server.team.workflows.servicer import WorkflowServicer
from godel_server.team.workflows.store import WorkflowStore
from tests.unit.conftest import add_team

RED = "44444444-4444-4444-8444-444444444444"
ALICE = Caller(key_id="k-a", user_id="alice", role="developer", permissions=ROLES["developer"], teams=(RED,))
BOB = Caller(key_id="k-b", user_id="bob", role="developer", permissions=ROLES["developer"])
ROOT = Caller(key_id="k-r", user_id="root", role="admin", permissions=ROLES["admin"])


def as_caller(caller: Caller, method: str) -> None:
    method_var.set(method)
    caller_var.set(caller)


async def test_a_workflow_names_only_teams_its_creator_may_read(db: Database) -> None:
    team = str(uuid.uuid4())
    await add_team(db, team, Owner("alice"))
    servicer = WorkflowServicer(WorkflowStore(db), None, None, db)  # type: ignore[arg-type]
    step = workflow_pb2.StepDefinition(id="s", task="t")
    step.agent_selector.team_id = team
    requests = {
        "team_id": workflow_service_pb2.CreateWorkflowRequest(
            team_id=team,
            definition=workflow_pb2.WorkflowDefinition(
                name="w", steps=[workflow_pb2.StepDefinition(id="s", task="t")]
            ),
        ),
        "steps[0].agentSelector.teamId": workflow_service_pb2.CreateWorkflowRequest(
            definition=workflow_pb2.WorkflowDefinition(name="w", steps=[step])
        ),
    }
    as_caller(BOB, "/godel.v1.WorkflowService/CreateWorkflow")
    for field, request in requests.items():
        with pytest.raises(ReferenceNotFoundError) as refused:
            await servicer.CreateWorkflow(request, None)
        assert refused.value.metadata["field"] == field and team in refused.value.message
    for caller in (ALICE, ROOT):  # passes the check (then fails on the missing engine)
        as_caller(caller, "/godel.v1.WorkflowService/CreateWorkflow")
        for request in requests.values():
            with pytest.raises(AttributeError):
                await servicer.CreateWorkflow(request, None)


async def test_a_sub_agent_names_only_a_parent_session_its_creator_may_read(agent_db: Database) -> None:
    now = utcnow()
    async with agent_db.session() as session:
        session.add(
            AgentRow(
                id="a1",
                model="m",
                task="t",
                config={},
                status="running",
                lifecycle_state="initializing",
                commits=[],
                spawned_at=now,
                updated_at=now,
                meta={},
                user_id="alice",
                user_team_id=RED,
            )
        )
        session.add(
            SessionRow(id="s1", agent_id="a1", status=SessionStatus.ACTIVE, created_at=now, updated_at=now)
        )
    references = References(agent_db, "127.0.0.1:1", TlsSettings())
    as_caller(BOB, "/godel.v1.AgentService/CreateAgent")
    for session_id in ("s1", str(uuid.uuid4())):
        with pytest.raises(ReferenceNotFoundError) as refused:
            await references.require_parent_session(session_id)
        assert refused.value.metadata["field"] == "parent_session_id"
    for caller in (ALICE, ROOT):
        as_caller(caller, "/godel.v1.AgentService/CreateAgent")
        await references.require_parent_session("s1")
    # Naming a team: callers whose agent:create has scope all are not asked about it (the team
    # service's own key has no team permission).
    await references.require_team(str(uuid.uuid4()), ())
