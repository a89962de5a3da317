"""WorkflowService (spec §3.1 Workflows) over the WorkflowEngine."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import grpc
from google.protobuf import json_format
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from godel.v1 import workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc
from godel_server.agent.validation import check_id
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import FieldViolation, UnavailableError, ValidationError
from godel_server.runtime.events import struct_to_dict, utcnow
from godel_server.runtime.pagination import decode_token, encode_token, page_size, query_fingerprint
from godel_server.runtime.validation import Violations
from godel_server.team.agents import AgentGateway
from godel_server.team.listing import newest_first
from godel_server.team.models import WorkflowRow, WorkflowStepRow
from godel_server.team.workflows.definition import parse_and_validate, validate
from godel_server.team.workflows.engine import (
    AGENT_TEMPLATES,
    TERMINAL,
    WorkflowEngine,
    WorkflowNotFoundError,
)
from godel_server.team.workflows.mapping import STATUS_FROM_PROTO, step_to_proto, workflow_to_proto

UPDATABLE = ("name", "description", "metadata", "context")


class WorkflowServicer(workflow_service_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, db: Database, engine: WorkflowEngine, agents: AgentGateway) -> None:
        self._db = db
        self._engine = engine
        self._agents = agents

    async def _get(self, workflow_id: str) -> workflow_pb2.Workflow:
        async with self._db.reader() as session:
            row = await session.get(WorkflowRow, workflow_id)
            if row is None:
                raise WorkflowNotFoundError(workflow_id)
            if row.status in TERMINAL:
                return workflow_to_proto(row)
            # The engine stores `results` when the workflow ends; until then, the steps have them.
            done = await session.execute(
                select(WorkflowStepRow.step_id, WorkflowStepRow.result).where(
                    WorkflowStepRow.workflow_id == workflow_id, WorkflowStepRow.status == "completed"
                )
            )
            results = {sid: (result or {}).get("output", "") for sid, result in done}
        return workflow_to_proto(row, results)

    def _definition(
        self, request: workflow_service_pb2.CreateWorkflowRequest
    ) -> workflow_pb2.WorkflowDefinition:
        if request.definition_text and request.HasField("definition"):
            raise ValidationError.single(
                "definition_text", "give either definition or definition_text, not both"
            )
        if request.definition_text:
            return parse_and_validate(request.definition_text)
        if not request.HasField("definition"):
            raise ValidationError.single("definition", "is required (or give definition_text)")
        validate(request.definition)
        return request.definition

    async def _agent_templates(
        self, definition: workflow_pb2.WorkflowDefinition
    ) -> dict[str, dict[str, object]]:
        """Steps naming a specific agent run on an agent configured like it."""
        templates: dict[str, dict[str, object]] = {}
        violations: list[FieldViolation] = []
        for i, step in enumerate(definition.steps):
            if not step.agent or step.agent in templates:
                continue
            try:
                agent = await self._agents.get(step.agent)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    violations.append(
                        FieldViolation(f"steps[{i}].agent", f"agent {step.agent} does not exist")
                    )
                    continue
                raise UnavailableError(f"agent service: {exc.code().name}") from None
            templates[step.agent] = {
                "runtime": agent.config.runtime,
                "command": list(agent.config.command),
                "model": agent.model,
                "repo": agent.repo,
                "endpoint": agent.config.endpoint,
            }
        if violations:
            raise ValidationError(violations)
        return templates

    async def CreateWorkflow(
        self, request: workflow_service_pb2.CreateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        v = Violations()
        v.max_len("request_id", request.request_id, 100)
        v.uuid("team_id", request.team_id)
        v.raise_if_any()
        definition = self._definition(request)
        if request.request_id:
            existing = await self._by_request(request.request_id)
            if existing is not None:
                return existing
        stored = json_format.MessageToDict(definition)
        templates = await self._agent_templates(definition)
        if templates:
            stored[AGENT_TEMPLATES] = templates
        caller = current_caller()
        row = WorkflowRow(
            id=_new_id(),
            request_id=request.request_id or None,
            name=definition.name,
            description=definition.description or None,
            definition=stored,
            status="pending",
            context=struct_to_dict(request.context),
            results={},
            progress=0,
            team_id=request.team_id or None,
            created_by=caller.key_id if caller else None,
            created_at=utcnow(),
            meta=struct_to_dict(request.metadata),
        )
        try:
            async with self._db.session() as session:
                await self._engine.create(session, row, definition)
        except IntegrityError:
            existing = await self._by_request(request.request_id) if request.request_id else None
            if existing is None:
                raise
            return existing
        if request.start:
            await self._engine.start(row.id)
        return await self._get(row.id)

    async def _by_request(self, request_id: str) -> workflow_pb2.Workflow | None:
        async with self._db.reader() as session:
            row = await session.scalar(select(WorkflowRow).where(WorkflowRow.request_id == request_id))
        return workflow_to_proto(row) if row else None

    async def GetWorkflow(
        self, request: workflow_service_pb2.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        return await self._get(request.id)

    async def ListWorkflows(
        self, request: workflow_service_pb2.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowsResponse:
        if request.team_id:
            check_id("team_id", request.team_id)
        statuses = sorted(STATUS_FROM_PROTO[s] for s in request.status if s in STATUS_FROM_PROTO)
        stmt = select(WorkflowRow)
        if statuses:
            stmt = stmt.where(WorkflowRow.status.in_(statuses))
        if request.team_id:
            stmt = stmt.where(WorkflowRow.team_id == request.team_id)
        async with self._db.reader() as session:
            rows: Sequence[WorkflowRow]
            rows, token = await newest_first(
                session,
                stmt,
                WorkflowRow.created_at,
                WorkflowRow.id,
                requested_size=request.page_size,
                token=request.page_token,
                query=("workflows", statuses, request.team_id),
            )
        return workflow_service_pb2.ListWorkflowsResponse(
            workflows=[workflow_to_proto(r) for r in rows], next_page_token=token
        )

    async def UpdateWorkflow(
        self, request: workflow_service_pb2.UpdateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        wf = request.workflow
        check_id("workflow.id", wf.id)
        paths = list(request.update_mask.paths) or ["name", "description", "metadata"]
        v = Violations()
        for path in paths:
            if path not in UPDATABLE:
                v.add("update_mask", f"{path!r} cannot be updated (updatable: {', '.join(UPDATABLE)})")
        if "name" in paths:
            v.require("workflow.name", wf.name, max_len=255)
        v.raise_if_any()
        async with self._db.session() as session:
            row = await session.get(WorkflowRow, wf.id, with_for_update=True)
            if row is None:
                raise WorkflowNotFoundError(wf.id)
            if "name" in paths:
                row.name = wf.name
            if "description" in paths:
                row.description = wf.description or None
            if "metadata" in paths:
                row.meta = struct_to_dict(wf.metadata)
            if "context" in paths:
                row.context = struct_to_dict(wf.context)
        return await self._get(wf.id)

    async def DeleteWorkflow(
        self, request: workflow_service_pb2.DeleteWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_service_pb2.DeleteWorkflowResponse:
        check_id("id", request.id)
        await self._engine.delete(request.id)
        return workflow_service_pb2.DeleteWorkflowResponse()

    async def StartWorkflow(
        self, request: workflow_service_pb2.StartWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._engine.start(request.id)
        return await self._get(request.id)

    async def CancelWorkflow(
        self, request: workflow_service_pb2.CancelWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        if len(request.reason) > 1000:
            raise ValidationError.single("reason", "must be at most 1000 characters")
        await self._engine.cancel(request.id, request.reason)
        return await self._get(request.id)

    async def PauseWorkflow(
        self, request: workflow_service_pb2.PauseWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._engine.pause(request.id)
        return await self._get(request.id)

    async def ResumeWorkflow(
        self, request: workflow_service_pb2.ResumeWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._engine.resume(request.id)
        return await self._get(request.id)

    async def ListWorkflowSteps(
        self, request: workflow_service_pb2.ListWorkflowStepsRequest, context: grpc.aio.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowStepsResponse:
        check_id("id", request.id)
        size = page_size(request.page_size, default=100)
        fingerprint = query_fingerprint("steps", request.id)
        cursor = decode_token(request.page_token, fingerprint)
        after = int(cursor.get("p", -1)) if cursor else -1
        async with self._db.reader() as session:
            if await session.get(WorkflowRow, request.id) is None:
                raise WorkflowNotFoundError(request.id)
            rows = (
                await session.scalars(
                    select(WorkflowStepRow)
                    .where(WorkflowStepRow.workflow_id == request.id, WorkflowStepRow.position > after)
                    .order_by(WorkflowStepRow.position)
                    .limit(size + 1)
                )
            ).all()
        token = encode_token({"p": rows[size - 1].position}, fingerprint) if len(rows) > size else ""
        return workflow_service_pb2.ListWorkflowStepsResponse(
            steps=[step_to_proto(r) for r in rows[:size]], next_page_token=token
        )


def _new_id() -> str:
    return str(uuid.uuid4())
