"""Tasks between protobuf (API edge) and storage rows."""

from __future__ import annotations

from godel.v1 import task_pb2
from godel_server.runtime.events import set_structs, set_times
from godel_server.team.models import TaskRow

STATUS_TO_PROTO: dict[str, task_pb2.TaskStatus.ValueType] = {
    "pending": task_pb2.TASK_STATUS_PENDING,
    "assigned": task_pb2.TASK_STATUS_ASSIGNED,
    "in_progress": task_pb2.TASK_STATUS_IN_PROGRESS,
    "completed": task_pb2.TASK_STATUS_COMPLETED,
    "failed": task_pb2.TASK_STATUS_FAILED,
    "cancelled": task_pb2.TASK_STATUS_CANCELLED,
}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}

# Stored as 1 (low) .. 4 (critical), the same numbers as the enum.
PRIORITY_TO_PROTO: dict[int, task_pb2.TaskPriority.ValueType] = {
    1: task_pb2.TASK_PRIORITY_LOW,
    2: task_pb2.TASK_PRIORITY_MEDIUM,
    3: task_pb2.TASK_PRIORITY_HIGH,
    4: task_pb2.TASK_PRIORITY_CRITICAL,
}
PRIORITY_FROM_PROTO = {v: k for k, v in PRIORITY_TO_PROTO.items()}


def task_to_proto(row: TaskRow) -> task_pb2.Task:
    task = task_pb2.Task(
        id=row.id,
        title=row.title,
        description=row.description or "",
        status=STATUS_TO_PROTO.get(row.status, task_pb2.TASK_STATUS_UNSPECIFIED),
        priority=PRIORITY_TO_PROTO.get(row.priority, task_pb2.TASK_PRIORITY_UNSPECIFIED),
        team_id=row.team_id or "",
        agent_id=row.agent_id or "",
        error=row.error or "",
    )
    set_structs(task, result=row.result, metadata=row.meta)
    set_times(
        task,
        created_at=row.created_at,
        updated_at=row.updated_at,
        assigned_at=row.assigned_at,
        completed_at=row.completed_at,
    )
    return task
