"""TaskService: a priority queue of tasks for the agents of a team (spec §3.1 Tasks)."""

from __future__ import annotations

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import NotFoundError
from godel_server.runtime.events import struct_to_dict
from godel_server.runtime.ownership import Owner, reach
from godel_server.runtime.statuses import TASK_STATUS
from godel_server.runtime.validation import Violations
from godel_server.team import owners
from godel_server.team.agents import AgentFinder, require_agent
from godel_server.team.models import TaskRow
from godel_server.team.tasks.mapping import PRIORITY, task_to_proto
from godel_server.team.tasks.queue import DEFAULT_PRIORITY, TaskQueue

MAX_TITLE_LEN = 500
MAX_TEXT_LEN = 100_000
MAX_STRUCT_BYTES = 1_000_000


def _struct_too_big(v: Violations, field: str, size: int) -> None:
    if size > MAX_STRUCT_BYTES:
        v.add(field, f"must be at most {MAX_STRUCT_BYTES} bytes encoded")


def check_create(request: task_service_pb2.CreateTaskRequest) -> None:
    v = Violations()
    v.require("title", request.title, max_len=MAX_TITLE_LEN)
    v.max_len("description", request.description, MAX_TEXT_LEN)
    v.max_len("request_id", request.request_id, 100)
    v.uuid("team_id", request.team_id)
    if request.priority and request.priority not in PRIORITY.numbers:
        v.add("priority", f"must be one of {', '.join(n.upper() for n in PRIORITY.names)}")
    _struct_too_big(v, "metadata", request.metadata.ByteSize())
    v.raise_if_any()


def check_list(request: task_service_pb2.ListTasksRequest) -> None:
    v = Violations()
    if any(TASK_STATUS.get(s) is None for s in request.status):
        v.add("status", "must be TaskStatus values other than UNSPECIFIED")
    v.uuid("team_id", request.team_id)
    v.uuid("agent_id", request.agent_id)
    v.raise_if_any()


def check_id(v: Violations, value: str) -> None:
    v.require("id", value)
    v.uuid("id", value)


def check_assign(request: task_service_pb2.AssignTaskRequest) -> None:
    v = Violations()
    check_id(v, request.id)
    v.uuid("agent_id", request.agent_id)
    v.raise_if_any()


def check_complete(request: task_service_pb2.CompleteTaskRequest) -> None:
    v = Violations()
    check_id(v, request.id)
    v.max_len("error", request.error, MAX_TEXT_LEN)
    _struct_too_big(v, "result", request.result.ByteSize())
    v.raise_if_any()


class TaskServicer(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, db: Database, queue: TaskQueue, agents: AgentFinder) -> None:
        self._db = db
        self._queue = queue
        self._agents = agents

    async def _owned(self, task_id: str) -> None:
        await owners.require(self._db, TaskRow, task_id, NotFoundError("task", task_id))

    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.ListTasksResponse:
        check_list(request)
        async with self._db.reader() as session:
            rows, token = await self._queue.list_page(
                session,
                statuses=sorted({TASK_STATUS.name(s) for s in request.status}),
                team_id=request.team_id,
                agent_id=request.agent_id,
                reach=reach(),
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return task_service_pb2.ListTasksResponse(
            tasks=[task_to_proto(r) for r in rows], next_page_token=token
        )

    async def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_pb2.Task:
        check_create(request)
        caller = current_caller()
        owner = Owner.of(caller)
        if request.team_id:
            await owners.require_team(self._db, "team_id", request.team_id)

        async def create(session: AsyncSession) -> TaskRow:
            return await self._queue.create(
                session,
                title=request.title,
                description=request.description,
                priority=request.priority or DEFAULT_PRIORITY,
                team_id=request.team_id,
                metadata=struct_to_dict(request.metadata),
                request_id=request.request_id,
                created_by=caller.key_id if caller else "",
                owner=owner,
            )

        async def find(session: AsyncSession) -> TaskRow | None:
            return await self._queue.by_request_id(session, request.request_id, owner)

        return task_to_proto(await self._db.create_once(request.request_id, find, create))

    async def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_pb2.Task:
        v = Violations()
        check_id(v, request.id)
        v.raise_if_any()
        await self._owned(request.id)
        async with self._db.reader() as session:
            return task_to_proto(await self._queue.get(session, request.id))

    async def AssignTask(
        self, request: task_service_pb2.AssignTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_pb2.Task:
        check_assign(request)
        await self._owned(request.id)
        if request.agent_id:
            await require_agent(self._agents, "agent_id", request.agent_id)
        async with self._db.session() as session:
            row = await self._queue.assign(session, request.id, request.agent_id)
            return task_to_proto(row)

    async def CompleteTask(
        self, request: task_service_pb2.CompleteTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_pb2.Task:
        check_complete(request)
        await self._owned(request.id)
        async with self._db.session() as session:
            row = await self._queue.complete(
                session, request.id, struct_to_dict(request.result), request.error
            )
            return task_to_proto(row)
