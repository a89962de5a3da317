"""The team service's mapping between Workflow protobufs and rows."""

from __future__ import annotations

from google.protobuf import json_format

from godel.v1 import workflow_pb2, workflow_service_pb2
from godel_server.runtime.context import Caller
from godel_server.runtime.events import set_structs, set_times, struct_to_dict, utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import Owner
from godel_server.runtime.statuses import STEP_STATUS, WORKFLOW_STATUS, WorkflowStatus
from godel_server.team.models import WorkflowRow, WorkflowStepRow

# Where a stored definition keeps the configs of the agents its steps name.
AGENT_TEMPLATES = "_agentTemplates"


def new_workflow_row(
    request: workflow_service_pb2.CreateWorkflowRequest,
    definition: workflow_pb2.WorkflowDefinition,
    agent_templates: dict[str, dict[str, object]],
    caller: Caller | None,
) -> WorkflowRow:
    """The row of a workflow a CreateWorkflow request asks for (checked), before it starts. The
    stored definition carries the configs of the agents its steps name (AGENT_TEMPLATES)."""
    stored = json_format.MessageToDict(definition)
    if agent_templates:
        stored[AGENT_TEMPLATES] = agent_templates
    owner = Owner.of(caller)
    return WorkflowRow(
        id=new_id(),
        request_id=request.request_id or None,
        name=definition.name,
        description=definition.description or None,
        definition=stored,
        status=WorkflowStatus.PENDING,
        context=struct_to_dict(request.context),
        results={},
        progress=0,
        team_id=request.team_id or None,
        created_by=caller.key_id if caller else None,
        user_id=owner.user_id,
        user_team_id=owner.team_id,
        created_at=utcnow(),
        meta=struct_to_dict(request.metadata),
    )


def definition_of(row: WorkflowRow) -> workflow_pb2.WorkflowDefinition:
    return json_format.ParseDict(
        row.definition, workflow_pb2.WorkflowDefinition(), ignore_unknown_fields=True
    )


def workflow_to_proto(row: WorkflowRow, results: dict[str, str] | None = None) -> workflow_pb2.Workflow:
    """`results` replaces the stored ones (those of a running workflow come from its steps)."""
    wf = workflow_pb2.Workflow(
        id=row.id,
        name=row.name,
        description=row.description or "",
        definition=definition_of(row),
        status=WORKFLOW_STATUS.to_proto(row.status),
        current_step_id=row.current_step_id or "",
        team_id=row.team_id or "",
        created_by=row.created_by or "",
        progress=row.progress,
        owner_user_id=row.user_id or "",
        owner_team_id=row.user_team_id or "",
    )
    set_times(wf, created_at=row.created_at, started_at=row.started_at, completed_at=row.completed_at)
    set_structs(
        wf, context=row.context, results=row.results if results is None else results, metadata=row.meta
    )
    if row.error:
        wf.metadata.update({"error": row.error})
    return wf


def step_to_proto(row: WorkflowStepRow) -> workflow_pb2.WorkflowStep:
    step = workflow_pb2.WorkflowStep(
        id=row.id,
        workflow_id=row.workflow_id,
        step_id=row.step_id,
        name=row.name,
        task=row.task,
        dependencies=list(row.dependencies or []),
        status=STEP_STATUS.to_proto(row.status),
        error=row.error or "",
        retry_count=row.retry_count,
        agent_id=row.agent_id or "",
    )
    set_times(step, started_at=row.started_at, completed_at=row.completed_at)
    set_structs(step, result=row.result)
    return step
