"""``client.tasks``: a queue of tasks for agents; create, assign and complete them (TaskService)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from godel.v1 import task_pb2, task_service_pb2
from godel_client.enums import TaskPriorityLike, TaskStatusLike, enum_numbers, task_priority, task_status
from godel_client.methods import Mode, SubClient, by_id, paged, unary
from godel_client.service import to_struct


def _create(
    title: str,
    *,
    description: str | None = None,
    priority: TaskPriorityLike | None = None,
    team_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> task_service_pb2.CreateTaskRequest:
    """Queues a task (for the agents of ``team_id`` when given)."""
    return task_service_pb2.CreateTaskRequest(
        request_id=request_id or "",
        title=title,
        description=description or "",
        priority=task_priority(priority) if priority is not None else task_pb2.TASK_PRIORITY_UNSPECIFIED,
        team_id=team_id or "",
        metadata=to_struct(metadata),
    )


def _list(
    *,
    status: TaskStatusLike | Iterable[TaskStatusLike] | None = None,
    team_id: str | None = None,
    agent_id: str | None = None,
    page_size: int = 50,
) -> task_service_pb2.ListTasksRequest:
    """Tasks, highest priority first, fetched page by page as the iterator is consumed."""
    return task_service_pb2.ListTasksRequest(
        page_size=page_size,
        status=enum_numbers(status, task_status),
        team_id=team_id or "",
        agent_id=agent_id or "",
    )


def _assign(id: str, agent_id: str | None = None) -> task_service_pb2.AssignTaskRequest:
    """Assigns the task to ``agent_id``, or (None) to an idle agent of the task's team."""
    return task_service_pb2.AssignTaskRequest(id=id, agent_id=agent_id or "")


def _complete(
    id: str, *, result: Mapping[str, Any] | None = None, error: str | None = None
) -> task_service_pb2.CompleteTaskRequest:
    """Completes the task with ``result``; with ``error`` it fails instead."""
    return task_service_pb2.CompleteTaskRequest(id=id, result=to_struct(result), error=error or "")


class Tasks(SubClient[Mode]):
    """The task queue of the mesh."""

    SERVICE = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]

    create = unary("CreateTask", _create, task_pb2.Task)
    get = unary("GetTask", by_id(task_service_pb2.GetTaskRequest), task_pb2.Task)
    list = paged("ListTasks", _list, task_service_pb2.ListTasksResponse, lambda page: page.tasks)
    assign = unary("AssignTask", _assign, task_pb2.Task)
    complete = unary("CompleteTask", _complete, task_pb2.Task)
