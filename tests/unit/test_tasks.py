"""The task queue of the team service: priorities, idle agents fed by agent events, requeue."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from google.protobuf import json_format
from sqlalchemy import select

from godel.v1 import agent_pb2, event_pb2, task_events_pb2, task_pb2, task_service_pb2
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller, caller_var, method_var
from godel_server.runtime.db import Database
from godel_server.runtime.errors import (
    FailedPreconditionError,
    NotFoundError,
    ReferenceNotFoundError,
    ValidationError,
)
from godel_server.runtime.events import event_data, to_struct
from godel_server.runtime.ownership import Owner
from godel_server.runtime.publisher import EventPublisher
from godel_server.team.models import TaskRow, TeamAgentRow
from godel_server.team.tasks.queue import TaskQueue
from godel_server.team.tasks.servicer import TaskServicer
from tests.fakes.events import moved, spawned
from tests.unit.conftest import add_team, outbox_events

ALICE = Caller(key_id="k-alice", user_id="alice", role="developer", permissions=ROLES["developer"])
BOB = Caller(key_id="k-bob", user_id="bob", role="developer", permissions=ROLES["developer"])
RED = "33333333-3333-4333-8333-333333333333"  # a user team of alice and carol
ALICE_RED = Caller(
    key_id="k-alice", user_id="alice", role="developer", permissions=ROLES["developer"], teams=(RED,)
)
CAROL = Caller(
    key_id="k-carol", user_id="carol", role="developer", permissions=ROLES["developer"], teams=(RED,)
)
ROOT = Caller(key_id="k-root", user_id="root", role="admin", permissions=ROLES["admin"])


class Agents:
    """The agent service as the task servicer sees it: agents by id, with their owners."""

    def __init__(self) -> None:
        self.agents: dict[str, agent_pb2.Agent] = {}

    def add(self, owner: Owner) -> str:
        agent_id = new_id()
        self.agents[agent_id] = agent_pb2.Agent(
            id=agent_id, owner_user_id=owner.user_id or "", owner_team_id=owner.team_id or ""
        )
        return agent_id

    async def find(self, agent_id: str) -> agent_pb2.Agent | None:
        return self.agents.get(agent_id)


class Served:
    """Calls TaskServicer's RPCs as the server does: the interceptor has recorded the RPC and
    its caller (ownership checks read both)."""

    def __init__(self, servicer: TaskServicer, caller: Caller) -> None:
        self._servicer = servicer
        self.caller = caller

    def __getattr__(self, name: str) -> Any:
        rpc = getattr(self._servicer, name)

        async def call(request: Any, context: Any) -> Any:
            method_var.set(f"/godel.v1.TaskService/{name}")
            caller_var.set(self.caller)
            return await rpc(request, context)

        return call


TEAM = "11111111-1111-4111-8111-111111111111"
OTHER_TEAM = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def queue() -> TaskQueue:
    return TaskQueue(EventPublisher(None), "test-1")


def spawn(agent_id: str, team_id: str = TEAM) -> event_pb2.Event:
    return spawned(
        agent_pb2.Agent(id=agent_id, team_id=team_id, status=agent_pb2.AGENT_STATUS_PENDING, task="work")
    )


def status_change(event_type: str, agent_id: str, status: str, team_id: str = TEAM) -> event_pb2.Event:
    return moved(event_type, agent_id, status, team_id)


async def feed(db: Database, queue: TaskQueue, *events: event_pb2.Event) -> None:
    for event in events:
        async with db.session() as session:
            await queue.on_agent_event(session, event)


async def create(db: Database, queue: TaskQueue, title: str, **kwargs: Any) -> TaskRow:
    async with db.session() as session:
        return await queue.create(session, title=title, **kwargs)


async def task(db: Database, task_id: str) -> TaskRow:
    async with db.reader() as session:
        row = await session.get(TaskRow, task_id)
    assert row is not None
    return row


async def task_events(db: Database) -> list[tuple[str, Any]]:
    """(type, typed payload) of the task events sent so far."""
    found = await outbox_events(db)
    return [(e.type, event_data(e)) for e in found if e.type.startswith("task:")]


def new_id() -> str:
    return str(uuid.uuid4())


async def test_pending_tasks_go_to_idle_agents_highest_priority_oldest_first(
    db: Database, queue: TaskQueue
) -> None:
    low = await create(db, queue, "low", priority=1, team_id=TEAM)
    medium_old = await create(db, queue, "medium old", team_id=TEAM)
    critical = await create(db, queue, "critical", priority=4, team_id=TEAM)
    medium_new = await create(db, queue, "medium new", priority=2, team_id=TEAM)
    assert (await task(db, low.id)).status == "pending"  # no agent yet

    a1, a2 = new_id(), new_id()
    await feed(db, queue, spawn(a1))
    assert (await task(db, critical.id)).agent_id == a1
    await feed(db, queue, spawn(a2))
    second = await task(db, medium_old.id)
    assert (second.status, second.agent_id) == ("assigned", a2)
    assert (await task(db, medium_new.id)).status == "pending"

    # An agent that finishes its task takes the next one.
    async with db.session() as session:
        await queue.complete(session, critical.id, {"answer": 42})
    assert (await task(db, medium_new.id)).agent_id == a1
    async with db.session() as session:
        failed = await queue.complete(session, medium_old.id, error="boom")
    assert (failed.status, failed.error) == ("failed", "boom")
    assert (await task(db, low.id)).agent_id == a2

    sent = await task_events(db)
    assert [t for t, _ in sent].count("task:created") == 4
    assigned = [p for t, p in sent if t == "task:assigned"]
    assert [p.task.id for p in assigned] == [critical.id, medium_old.id, medium_new.id, low.id]
    first = assigned[0].task
    assert (first.id, first.title, first.team_id, first.agent_id, first.priority, first.status) == (
        critical.id,
        "critical",
        TEAM,
        a1,
        task_pb2.TASK_PRIORITY_CRITICAL,
        task_pb2.TASK_STATUS_ASSIGNED,
    )
    assert ("task:completed", critical.id) in [(t, p.task.id) for t, p in sent]
    assert ("task:failed", medium_old.id) in [(t, p.task.id) for t, p in sent]
    failed_event = next(p for t, p in sent if t == "task:failed")
    assert isinstance(failed_event, task_events_pb2.TaskFailed) and failed_event.task.error == "boom"
    stored = await task(db, critical.id)
    assert stored.result == {"answer": 42} and stored.completed_at is not None


async def test_a_new_task_goes_straight_to_an_idle_agent_and_only_of_its_team(
    db: Database, queue: TaskQueue
) -> None:
    mine, theirs = new_id(), new_id()
    await feed(db, queue, spawn(theirs, OTHER_TEAM), spawn(mine))
    first = await create(db, queue, "first", team_id=TEAM)
    assert (first.status, first.agent_id) == ("assigned", mine)
    second = await create(db, queue, "second", team_id=TEAM)
    assert second.status == "pending"  # the team's one agent is busy
    no_team = await create(db, queue, "loose")
    assert no_team.status == "pending"


async def test_an_agent_that_ends_gives_its_task_back_to_the_queue(db: Database, queue: TaskQueue) -> None:
    a1, a2 = new_id(), new_id()
    await feed(db, queue, spawn(a1), status_change("agent:start", a1, "running"))
    work = await create(db, queue, "work", team_id=TEAM)
    assert work.agent_id == a1

    await feed(db, queue, status_change("agent:error", a1, "failed"))
    requeued = await task(db, work.id)
    assert (requeued.status, requeued.agent_id, requeued.assigned_at) == ("pending", None, None)

    # A paused agent counts as idle; a new one gets the requeued task.
    await feed(db, queue, spawn(a2), status_change("agent:pause", a2, "paused"))
    assert (await task(db, work.id)).agent_id == a2
    # The failed agent retries and is idle again, but there is nothing left to do.
    await feed(db, queue, status_change("agent:start", a1, "running"))
    async with db.reader() as session:
        agent = await session.get(TeamAgentRow, a1)
        assert agent is not None and agent.status == "running"

    # The holder is killed while another agent is idle: the task moves over at once.
    await feed(db, queue, status_change("agent:kill", a2, "killed"))
    assert (await task(db, work.id)).agent_id == a1
    sent = [(t, p.previous_agent_id) for t, p in await task_events(db) if t == "task:requeued"]
    assert sent == [("task:requeued", a1), ("task:requeued", a2)]

    # A status event of an agent first seen now still registers it (its team is in the metadata).
    late = new_id()
    await feed(db, queue, status_change("agent:restart", late, "pending"))
    extra = await create(db, queue, "extra", team_id=TEAM)
    assert extra.agent_id == late
    # Events of agents without a team are not ours.
    await feed(db, queue, status_change("agent:start", new_id(), "running", team_id=""))
    async with db.reader() as session:
        assert len((await session.scalars(select(TeamAgentRow))).all()) == 3


async def test_manual_assignment(db: Database, queue: TaskQueue) -> None:
    loose = await create(db, queue, "loose")
    with pytest.raises(FailedPreconditionError, match="has no team"):
        async with db.session() as session:
            await queue.assign(session, loose.id)
    outsider = new_id()
    async with db.session() as session:
        assigned = await queue.assign(session, loose.id, outsider)
    assert (assigned.status, assigned.agent_id) == ("assigned", outsider)

    queued = await create(db, queue, "queued", team_id=TEAM)
    async with db.session() as session:
        still = await queue.assign(session, queued.id)  # nobody idle: stays queued
    assert still.status == "pending"

    a1, a2 = new_id(), new_id()
    await feed(db, queue, spawn(a1))
    assert (await task(db, queued.id)).agent_id == a1
    follow = await create(db, queue, "follow", team_id=TEAM)
    assert follow.status == "pending"
    # Moving the task to a2 (an agent outside any team) frees a1, which takes the next task.
    async with db.session() as session:
        moved = await queue.assign(session, queued.id, a2)
    assert moved.agent_id == a2
    assert (await task(db, follow.id)).agent_id == a1

    await feed(db, queue, status_change("agent:complete", a1, "completed"))
    assert (await task(db, follow.id)).status == "pending"
    async with db.session() as session:
        with pytest.raises(FailedPreconditionError, match="is completed"):
            await queue.assign(session, follow.id, a1)
        await queue.complete(session, loose.id, {"ok": True})
    with pytest.raises(FailedPreconditionError, match="already completed"):
        async with db.session() as session:
            await queue.assign(session, loose.id, a2)
    with pytest.raises(FailedPreconditionError, match="already completed"):
        async with db.session() as session:
            await queue.complete(session, loose.id)


async def test_task_servicer_creates_idempotently_lists_and_maps(db: Database, queue: TaskQueue) -> None:
    await add_team(db, TEAM, Owner("alice"))
    agents = Agents()
    servicer = Served(TaskServicer(db, queue, agents), ALICE)
    request = task_service_pb2.CreateTaskRequest(
        request_id="req-1", title="write docs", team_id=TEAM, metadata=to_struct({"k": "v"})
    )
    first = await servicer.CreateTask(request, None)
    again = await servicer.CreateTask(request, None)
    assert again.id == first.id
    assert first.priority == task_pb2.TASK_PRIORITY_MEDIUM and first.status == task_pb2.TASK_STATUS_PENDING
    assert json_format.MessageToDict(first.metadata) == {"k": "v"}
    urgent = await servicer.CreateTask(
        task_service_pb2.CreateTaskRequest(
            title="urgent", priority=task_pb2.TASK_PRIORITY_HIGH, team_id=TEAM
        ),
        None,
    )
    other = await servicer.CreateTask(task_service_pb2.CreateTaskRequest(title="elsewhere"), None)

    page = await servicer.ListTasks(task_service_pb2.ListTasksRequest(page_size=2), None)
    assert [t.id for t in page.tasks] == [other.id, urgent.id] and page.next_page_token
    rest = await servicer.ListTasks(
        task_service_pb2.ListTasksRequest(page_size=2, page_token=page.next_page_token), None
    )
    assert [t.id for t in rest.tasks] == [first.id] and not rest.next_page_token
    mine = await servicer.ListTasks(task_service_pb2.ListTasksRequest(team_id=TEAM), None)
    assert {t.id for t in mine.tasks} == {first.id, urgent.id}

    agent = agents.add(Owner("alice"))
    assigned = await servicer.AssignTask(
        task_service_pb2.AssignTaskRequest(id=other.id, agent_id=agent), None
    )
    assert assigned.status == task_pb2.TASK_STATUS_ASSIGNED and assigned.HasField("assigned_at")
    held = await servicer.ListTasks(
        task_service_pb2.ListTasksRequest(status=[task_pb2.TASK_STATUS_ASSIGNED], agent_id=agent), None
    )
    assert [t.id for t in held.tasks] == [other.id]
    done = await servicer.CompleteTask(
        task_service_pb2.CompleteTaskRequest(id=other.id, result=to_struct({"pages": 3})), None
    )
    assert done.status == task_pb2.TASK_STATUS_COMPLETED and done.result["pages"] == 3
    got = await servicer.GetTask(task_service_pb2.GetTaskRequest(id=other.id), None)
    assert got.HasField("completed_at") and got.agent_id == agent
    assert got.owner_user_id == "alice"

    # Another developer (in no team with alice) sees none of it and may not touch it; the same
    # request id makes bob's own task.
    servicer.caller = BOB
    assert not (await servicer.ListTasks(task_service_pb2.ListTasksRequest(), None)).tasks
    for rpc, req in (
        ("GetTask", task_service_pb2.GetTaskRequest(id=first.id)),
        ("AssignTask", task_service_pb2.AssignTaskRequest(id=first.id, agent_id=agent)),
        ("CompleteTask", task_service_pb2.CompleteTaskRequest(id=first.id)),
    ):
        with pytest.raises(NotFoundError):
            await getattr(servicer, rpc)(req, None)
    bobs = await servicer.CreateTask(
        task_service_pb2.CreateTaskRequest(request_id=request.request_id, title="bob's"), None
    )
    assert bobs.id != first.id and bobs.owner_user_id == "bob"
    servicer.caller = ALICE
    assert (await servicer.GetTask(task_service_pb2.GetTaskRequest(id=first.id), None)).status == (
        task_pb2.TASK_STATUS_PENDING
    )


async def test_task_servicer_validation_and_not_found(db: Database, queue: TaskQueue) -> None:
    servicer = Served(TaskServicer(db, queue, Agents()), ALICE)
    with pytest.raises(ValidationError) as info:
        await servicer.CreateTask(
            task_service_pb2.CreateTaskRequest(
                title="x" * 501, team_id="team-1", priority=task_pb2.TaskPriority.ValueType(7)
            ),
            None,
        )
    assert {v.field for v in info.value.violations} == {"title", "team_id", "priority"}
    with pytest.raises(ValidationError) as info:
        await servicer.CreateTask(task_service_pb2.CreateTaskRequest(title="  "), None)
    assert [v.field for v in info.value.violations] == ["title"]
    with pytest.raises(ValidationError) as info:
        await servicer.AssignTask(task_service_pb2.AssignTaskRequest(id="", agent_id="bob"), None)
    assert {v.field for v in info.value.violations} == {"id", "agent_id"}
    with pytest.raises(ValidationError) as info:
        await servicer.ListTasks(
            task_service_pb2.ListTasksRequest(status=[task_pb2.TASK_STATUS_UNSPECIFIED], team_id="t"), None
        )
    assert {v.field for v in info.value.violations} == {"status", "team_id"}
    with pytest.raises(ValidationError) as info:
        await servicer.ListTasks(task_service_pb2.ListTasksRequest(page_token="garbage"), None)
    assert [v.field for v in info.value.violations] == ["page_token"]
    with pytest.raises(ValidationError):
        await servicer.GetTask(task_service_pb2.GetTaskRequest(id="nope"), None)

    missing = new_id()
    with pytest.raises(NotFoundError):
        await servicer.GetTask(task_service_pb2.GetTaskRequest(id=missing), None)
    with pytest.raises(NotFoundError):
        await servicer.AssignTask(task_service_pb2.AssignTaskRequest(id=missing), None)
    with pytest.raises(NotFoundError):
        await servicer.CompleteTask(task_service_pb2.CompleteTaskRequest(id=missing, error="x"), None)


async def test_tasks_point_only_at_teams_and_agents_their_creator_may_read(
    db: Database, queue: TaskQueue
) -> None:
    """CreateTask's team_id and AssignTask's agent_id must name a team or agent the caller may
    read (NOT_FOUND naming the field otherwise, as for one that does not exist); the refusals
    change nothing."""
    shared, private = new_id(), new_id()
    await add_team(db, shared, Owner("alice", RED))
    await add_team(db, private, Owner("alice"))
    agents = Agents()
    alices_agent, bobs_agent = agents.add(Owner("alice", RED)), agents.add(Owner("bob"))
    servicer = Served(TaskServicer(db, queue, agents), BOB)

    for team_id in (shared, private, new_id()):
        with pytest.raises(ReferenceNotFoundError) as refused:
            await servicer.CreateTask(task_service_pb2.CreateTaskRequest(title="x", team_id=team_id), None)
        assert refused.value.metadata["field"] == "team_id" and team_id in refused.value.message
    bobs_task = await servicer.CreateTask(task_service_pb2.CreateTaskRequest(title="mine"), None)
    for agent_id in (alices_agent, new_id()):
        with pytest.raises(ReferenceNotFoundError) as refused:
            await servicer.AssignTask(
                task_service_pb2.AssignTaskRequest(id=bobs_task.id, agent_id=agent_id), None
            )
        assert refused.value.metadata["field"] == "agent_id"
    assert (await task(db, bobs_task.id)).status == "pending"
    assert not [t for t in await outbox_events(db) if t.type == "task:assigned"]
    assigned = await servicer.AssignTask(
        task_service_pb2.AssignTaskRequest(id=bobs_task.id, agent_id=bobs_agent), None
    )
    assert assigned.agent_id == bobs_agent
    owners = {
        (e.metadata.owner_user_id, e.type) for e in await outbox_events(db) if e.type.startswith("task:")
    }
    assert owners == {("bob", "task:created"), ("bob", "task:assigned")}

    # A developer of alice's user team reads (team:read:team) her shared team, not her private
    # one, and reads only its own agents (agent:*:own).
    servicer.caller = CAROL
    in_shared = await servicer.CreateTask(task_service_pb2.CreateTaskRequest(title="y", team_id=shared), None)
    with pytest.raises(ReferenceNotFoundError):
        await servicer.AssignTask(
            task_service_pb2.AssignTaskRequest(id=in_shared.id, agent_id=alices_agent), None
        )
    with pytest.raises(ReferenceNotFoundError):
        await servicer.CreateTask(task_service_pb2.CreateTaskRequest(title="z", team_id=private), None)
    # Alice and an admin reach both.
    for caller in (ALICE_RED, ROOT):
        servicer.caller = caller
        await servicer.CreateTask(task_service_pb2.CreateTaskRequest(title="w", team_id=private), None)
