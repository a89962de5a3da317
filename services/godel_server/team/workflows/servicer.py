"""WorkflowService (spec §3.1 Workflows) over the WorkflowEngine (running workflows) and the
WorkflowStore (reading them)."""

from __future__ import annotations

import grpc

from godel.v1 import workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import FieldViolation, ValidationError
from godel_server.runtime.fieldmask import update_paths
from godel_server.runtime.ownership import Owner, reach
from godel_server.runtime.statuses import WORKFLOW_STATUS
from godel_server.runtime.validation import Violations, check_id
from godel_server.team import owners
from godel_server.team.agents import AgentGateway, readable
from godel_server.team.models import WorkflowRow
from godel_server.team.notifications import require_notify_permission
from godel_server.team.workflows.definition import parse_and_validate, validate
from godel_server.team.workflows.engine import WorkflowEngine, WorkflowNotFoundError
from godel_server.team.workflows.mapping import new_workflow_row, step_to_proto, workflow_to_proto
from godel_server.team.workflows.store import WorkflowStore

UPDATABLE = ("name", "description", "metadata", "context")
DEFAULT_UPDATE = ("name", "description", "metadata")


class WorkflowServicer(workflow_service_pb2_grpc.WorkflowServiceServicer):
    def __init__(
        self, store: WorkflowStore, engine: WorkflowEngine, agents: AgentGateway, db: Database
    ) -> None:
        self._store = store
        self._engine = engine
        self._agents = agents
        self._db = db

    async def _owned(self, workflow_id: str) -> None:
        await owners.require(self._db, WorkflowRow, workflow_id, WorkflowNotFoundError(workflow_id))

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
        """Steps naming a specific agent run on an agent configured like it: one the caller may
        read (the service's own key reads any agent, so the caller's reach is checked here)."""
        templates: dict[str, dict[str, object]] = {}
        violations: list[FieldViolation] = []
        for i, step in enumerate(definition.steps):
            if not step.agent or step.agent in templates:
                continue
            agent = await self._agents.find(step.agent)
            if agent is None or not readable(agent):
                violations.append(FieldViolation(f"steps[{i}].agent", f"agent {step.agent} does not exist"))
                continue
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

    async def _require_teams(
        self, request: workflow_service_pb2.CreateWorkflowRequest, definition: workflow_pb2.WorkflowDefinition
    ) -> None:
        """The teams the workflow and its steps' agent selectors name: ones the caller may read."""
        if request.team_id:
            await owners.require_team(self._db, "team_id", request.team_id)
        for i, step in enumerate(definition.steps):
            if step.agent_selector.team_id:
                field = f"steps[{i}].agentSelector.teamId"
                await owners.require_team(self._db, field, step.agent_selector.team_id)

    async def CreateWorkflow(
        self, request: workflow_service_pb2.CreateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        v = Violations()
        v.max_len("request_id", request.request_id, 100)
        v.uuid("team_id", request.team_id)
        v.raise_if_any()
        definition = self._definition(request)
        require_notify_permission(definition.notify_channels)
        await self._require_teams(request, definition)
        if request.request_id:
            existing = await self._store.by_request(request.request_id, Owner.of(current_caller()))
            if existing is not None:
                return existing
        templates = await self._agent_templates(definition)
        row = new_workflow_row(request, definition, templates, current_caller())
        workflow_id = await self._engine.add(row, definition)
        if request.start and workflow_id == row.id:
            await self._engine.start(row.id)
        return await self._store.get(workflow_id)

    async def GetWorkflow(
        self, request: workflow_service_pb2.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._owned(request.id)
        return await self._store.get(request.id)

    async def ListWorkflows(
        self, request: workflow_service_pb2.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowsResponse:
        if request.team_id:
            check_id("team_id", request.team_id)
        rows, token = await self._store.find(
            [s for s in map(WORKFLOW_STATUS.get, request.status) if s],
            request.team_id,
            reach(),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return workflow_service_pb2.ListWorkflowsResponse(
            workflows=[workflow_to_proto(r) for r in rows], next_page_token=token
        )

    async def UpdateWorkflow(
        self, request: workflow_service_pb2.UpdateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        wf = request.workflow
        check_id("workflow.id", wf.id)
        await self._owned(wf.id)
        v = Violations()
        fields = update_paths(request.update_mask, UPDATABLE, default=DEFAULT_UPDATE, v=v)
        if "name" in fields:
            v.require("workflow.name", wf.name, max_len=255)
        v.raise_if_any()
        return await self._store.update(wf, fields)

    async def DeleteWorkflow(
        self, request: workflow_service_pb2.DeleteWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_service_pb2.DeleteWorkflowResponse:
        check_id("id", request.id)
        await self._owned(request.id)
        await self._engine.delete(request.id)
        return workflow_service_pb2.DeleteWorkflowResponse()

    async def StartWorkflow(
        self, request: workflow_service_pb2.StartWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._owned(request.id)
        await self._engine.start(request.id)
        return await self._store.get(request.id)

    async def CancelWorkflow(
        self, request: workflow_service_pb2.CancelWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._owned(request.id)
        if len(request.reason) > 1000:
            raise ValidationError.single("reason", "must be at most 1000 characters")
        await self._engine.cancel(request.id, request.reason)
        return await self._store.get(request.id)

    async def PauseWorkflow(
        self, request: workflow_service_pb2.PauseWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._owned(request.id)
        await self._engine.pause(request.id)
        return await self._store.get(request.id)

    async def ResumeWorkflow(
        self, request: workflow_service_pb2.ResumeWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.Workflow:
        check_id("id", request.id)
        await self._owned(request.id)
        await self._engine.resume(request.id)
        return await self._store.get(request.id)

    async def ListWorkflowSteps(
        self, request: workflow_service_pb2.ListWorkflowStepsRequest, context: grpc.aio.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowStepsResponse:
        check_id("id", request.id)
        await self._owned(request.id)
        rows, token = await self._store.steps(
            request.id, page_size=request.page_size, page_token=request.page_token
        )
        return workflow_service_pb2.ListWorkflowStepsResponse(
            steps=[step_to_proto(r) for r in rows], next_page_token=token
        )
