"""What WorkflowService reads of workflows and their steps, and the changes that are not the
engine's (a workflow's name, description, metadata and context): every SQL query the servicer
needs. Running a workflow is the engine's (engine.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select

from godel.v1 import workflow_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.fieldmask import apply_update
from godel_server.runtime.ownership import Owner, Reach
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.statuses import StepStatus, WorkflowStatus
from godel_server.team.models import WorkflowRow, WorkflowStepRow
from godel_server.team.owners import same_request
from godel_server.team.workflows.engine import WorkflowNotFoundError
from godel_server.team.workflows.mapping import workflow_to_proto
from godel_server.team.workflows.scheduler import TERMINAL

NEWEST = Keyset((WorkflowRow.created_at, WorkflowRow.id), descending=True)
IN_ORDER = Keyset((WorkflowStepRow.position,))


class WorkflowStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, workflow_id: str) -> workflow_pb2.Workflow:
        """The workflow; one still running has the results of the steps completed so far."""
        async with self._db.reader() as session:
            row = await session.get(WorkflowRow, workflow_id)
            if row is None:
                raise WorkflowNotFoundError(workflow_id)
            if row.status in TERMINAL:
                return workflow_to_proto(row)
            # The engine stores `results` when the workflow ends; until then, the steps have them.
            done = await session.execute(
                select(WorkflowStepRow.step_id, WorkflowStepRow.result).where(
                    WorkflowStepRow.workflow_id == workflow_id,
                    WorkflowStepRow.status == StepStatus.COMPLETED,
                )
            )
            results = {sid: (result or {}).get("output", "") for sid, result in done}
        return workflow_to_proto(row, results)

    async def by_request(self, request_id: str, owner: Owner) -> workflow_pb2.Workflow | None:
        """The workflow a CreateWorkflow request of `owner` with this request_id created, if any."""
        async with self._db.reader() as session:
            row = await session.scalar(
                select(WorkflowRow).where(same_request(WorkflowRow, request_id, owner))
            )
        return workflow_to_proto(row) if row else None

    async def find(
        self,
        statuses: Sequence[WorkflowStatus],
        team_id: str,
        reach: Reach,
        *,
        page_size: int,
        page_token: str,
    ) -> tuple[Sequence[WorkflowRow], str]:
        """One page of the workflows in one of `statuses` (any when empty) of a team (any when
        "") that `reach` covers, newest first."""
        stmt = select(WorkflowRow).where(reach.where(WorkflowRow.user_id, WorkflowRow.user_team_id))
        if statuses:
            stmt = stmt.where(WorkflowRow.status.in_(statuses))
        if team_id:
            stmt = stmt.where(WorkflowRow.team_id == team_id)
        async with self._db.reader() as session:
            return await keyset_page(
                session,
                stmt,
                NEWEST,
                page_size=page_size,
                page_token=page_token,
                query=("workflows", sorted(statuses), team_id),
            )

    async def steps(
        self, workflow_id: str, *, page_size: int, page_token: str
    ) -> tuple[Sequence[WorkflowStepRow], str]:
        """One page of a workflow's steps in definition order."""
        async with self._db.reader() as session:
            if await session.get(WorkflowRow, workflow_id) is None:
                raise WorkflowNotFoundError(workflow_id)
            return await keyset_page(
                session,
                select(WorkflowStepRow).where(WorkflowStepRow.workflow_id == workflow_id),
                IN_ORDER,
                page_size=page_size,
                page_token=page_token,
                query=("steps", workflow_id),
                default_size=100,
            )

    async def update(self, workflow: workflow_pb2.Workflow, fields: Collection[str]) -> workflow_pb2.Workflow:
        """Changes the `fields` (checked: name, description, metadata, context) of a workflow to
        those of `workflow`."""
        async with self._db.session() as session:
            row = await session.get(WorkflowRow, workflow.id, with_for_update=True)
            if row is None:
                raise WorkflowNotFoundError(workflow.id)
            apply_update(row, workflow, fields)
        return await self.get(workflow.id)
