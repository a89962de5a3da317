"""Tasks between protobuf (API edge) and storage rows."""

from __future__ import annotations

from godel.v1 import task_pb2
from godel_server.runtime.enums import ProtoEnum
from godel_server.runtime.events import set_structs, set_times
from godel_server.runtime.statuses import TASK_STATUS
from godel_server.team.models import TaskRow

# Priorities are stored as the enum's numbers (1 low .. 4 critical) and printed by name ("high").
PRIORITY = ProtoEnum(task_pb2.TaskPriority, str)


def task_to_proto(row: TaskRow) -> task_pb2.Task:
    task = task_pb2.Task(
        id=row.id,
        title=row.title,
        description=row.description or "",
        status=TASK_STATUS.to_proto(row.status),
        priority=PRIORITY.known(row.priority, task_pb2.TASK_PRIORITY_UNSPECIFIED),
        team_id=row.team_id or "",
        agent_id=row.agent_id or "",
        error=row.error or "",
        owner_user_id=row.user_id or "",
        owner_team_id=row.user_team_id or "",
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
