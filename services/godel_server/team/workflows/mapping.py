"""The team service's mapping between Workflow protobufs and rows."""

from __future__ import annotations

from google.protobuf import json_format

from godel.v1 import workflow_pb2
from godel_server.runtime.events import set_structs, set_times
from godel_server.team.models import WorkflowRow, WorkflowStepRow

STATUS_TO_PROTO: dict[str, workflow_pb2.WorkflowStatus.ValueType] = {
    "pending": workflow_pb2.WORKFLOW_STATUS_PENDING,
    "running": workflow_pb2.WORKFLOW_STATUS_RUNNING,
    "paused": workflow_pb2.WORKFLOW_STATUS_PAUSED,
    "completed": workflow_pb2.WORKFLOW_STATUS_COMPLETED,
    "failed": workflow_pb2.WORKFLOW_STATUS_FAILED,
    "cancelled": workflow_pb2.WORKFLOW_STATUS_CANCELLED,
}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}

STEP_STATUS_TO_PROTO: dict[str, workflow_pb2.StepStatus.ValueType] = {
    "pending": workflow_pb2.STEP_STATUS_PENDING,
    "running": workflow_pb2.STEP_STATUS_RUNNING,
    "completed": workflow_pb2.STEP_STATUS_COMPLETED,
    "failed": workflow_pb2.STEP_STATUS_FAILED,
    "retrying": workflow_pb2.STEP_STATUS_RETRYING,
    "skipped": workflow_pb2.STEP_STATUS_SKIPPED,
    "cancelled": workflow_pb2.STEP_STATUS_CANCELLED,
}


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
        status=STATUS_TO_PROTO[row.status],
        current_step_id=row.current_step_id or "",
        team_id=row.team_id or "",
        created_by=row.created_by or "",
        progress=row.progress,
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
        status=STEP_STATUS_TO_PROTO[row.status],
        error=row.error or "",
        retry_count=row.retry_count,
        agent_id=row.agent_id or "",
    )
    set_times(step, started_at=row.started_at, completed_at=row.completed_at)
    set_structs(step, result=row.result)
    return step
