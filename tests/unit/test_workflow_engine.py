"""The workflow engine's handling of member events that outlive their workflow."""

from __future__ import annotations

import uuid

from godel_server.runtime.config import load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.publisher import EventPublisher
from godel_server.team.members import Effects, Members
from godel_server.team.models import MemberRow
from godel_server.team.workflows.engine import WorkflowEngine
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
