"""The task queue under concurrent transactions on PostgreSQL: a task freed while another
transaction is looking at the queue is still handed out."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from godel.v1 import agent_pb2
from godel_deploy.postgres import PostgresServer
from godel_server.runtime.db import Database
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import TaskStatus
from godel_server.team.models import TaskRow
from godel_server.team.service import TeamService
from godel_server.team.tasks.queue import TaskQueue
from tests.conftest import postgres_database
from tests.fakes.events import moved, spawned

TEAM = str(uuid.uuid4())


@pytest.fixture
async def db(postgres: PostgresServer) -> AsyncIterator[Database]:
    async with postgres_database(postgres, TeamService.migrations, "tq") as database:
        yield database


async def test_a_task_freed_while_another_transaction_fills_the_queue_is_handed_out(db: Database) -> None:
    queue = TaskQueue(EventPublisher(None), "test-1")
    async with db.session() as session:
        urgent = await queue.create(session, title="urgent", priority=4, team_id=TEAM)
        low = await queue.create(session, title="low", priority=1, team_id=TEAM)
    agent = str(uuid.uuid4())
    async with db.session() as session:
        await queue.on_agent_event(
            session,
            spawned(agent_pb2.Agent(id=agent, team_id=TEAM, status=agent_pb2.AGENT_STATUS_PENDING)),
        )
    async with db.reader() as session:
        assert (await session.get(TaskRow, urgent.id)).agent_id == agent  # type: ignore[union-attr]

    # The agent's `agent:start` is being consumed: that transaction looks at the queue (the low
    # task, no idle agent yet) and has not committed when the agent's task is completed.
    consumer = db.session()
    consumer_session = await consumer.__aenter__()
    await queue.on_agent_event(consumer_session, moved("agent:start", agent, "running", TEAM))
    completing = asyncio.create_task(_complete(db, queue, urgent.id))
    # The completion waits for the consumer's row lock on the low task (or, before the fix, skipped
    # it and is already done): either way it has looked at the queue before the consumer commits.
    deadline = time.monotonic() + 60
    while not (completing.done() or await _someone_waits_for_a_lock(db)):
        # Not a quiet fall-through: committing now would test nothing.
        assert time.monotonic() < deadline, "the completion neither ended nor waited for a lock in 60s"
        await asyncio.sleep(0.05)
    await consumer.__aexit__(None, None, None)
    await asyncio.wait_for(completing, 30)

    async with db.reader() as session:
        row = await session.get(TaskRow, low.id)
    assert row is not None and (row.status, row.agent_id) == (TaskStatus.ASSIGNED, agent)


async def _someone_waits_for_a_lock(db: Database) -> bool:
    async with db.reader() as session:
        return bool(await session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")))


async def _complete(db: Database, queue: TaskQueue, task_id: str) -> None:
    async with db.session() as session:
        await queue.complete(session, task_id, {"ok": True})
