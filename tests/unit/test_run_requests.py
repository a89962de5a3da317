"""Run requests consumed by an agent-service replica (agent/dispatch.py, `RunCoordinator.take`):
the agent is claimed and its run assigned, refused or noted as waiting in the consumer's own
transaction, on a real (SQLite) database; what was decided reaches the workers only once that
transaction has committed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from godel.v1 import event_pb2
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.dispatch import RunRequestConsumer
from godel_server.agent.logstore import LogStore
from godel_server.agent.models import AgentRow, ReplicaRow, SessionRow
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.state import AgentStateStore
from godel_server.agent.workers import WorkerConnection, WorkerRegistry
from godel_server.runtime.config import KafkaSettings, load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.events import utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import LifecycleState
from tests.fakes.agents import agent_row
from tests.unit.conftest import outbox_events

REPLICA = "replica-1"


@dataclass
class Rig:
    db: Database
    store: AgentStateStore
    coordinator: RunCoordinator
    consumer: RunRequestConsumer
    registry: WorkerRegistry
    begins: list[str]

    def worker(self, worker_id: str, capacity: int) -> WorkerConnection:
        return self.registry.add(
            wpb.WorkerHello(worker_id=worker_id, runtimes=["command"], capacity=capacity)
        )

    async def agent(self, command: tuple[str, ...] = ("true",), owner: str | None = None) -> event_pb2.Event:
        """A new agent (as CreateAgent stores it); returns its run request."""
        row = agent_row(command=command, owner=owner)
        async with self.db.session() as session:
            session.add(row)
        return self.store.run_request(row, "spawn")

    async def consume(self, *requests: event_pb2.Event) -> list[event_pb2.Event]:
        """One batch, as the consumer's poll loop hands it over: the transaction, then after it."""
        handled = await self.consumer._handle(list(requests))
        await self.consumer.after_commit(handled)
        return handled

    async def row(self, request: event_pb2.Event) -> AgentRow:
        async with self.db.reader() as session:
            row = await session.get(AgentRow, request.metadata.agent_id)
        assert row is not None
        return row


@pytest.fixture
async def rig(agent_db: Database, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = load_settings("agent", {"GODEL_HOME": str(tmp_path), "GODEL_INSTANCE_ID": REPLICA})
    registry = WorkerRegistry()
    store = AgentStateStore(agent_db, EventPublisher(None), REPLICA)
    coordinator = RunCoordinator(settings, store, LogStore(agent_db), registry)
    consumer = RunRequestConsumer(
        agent_db,
        KafkaSettings(),
        coordinator,
        client_id=REPLICA,
        dead_letters=DeadLetterStore(agent_db, component="agent-service", instance=REPLICA),
    )
    begins: list[str] = []
    event.listen(agent_db.engine.sync_engine, "begin", lambda conn: begins.append("begin"))
    yield Rig(agent_db, store, coordinator, consumer, registry, begins)


def assignments(conn: WorkerConnection) -> list[wpb.RunAssignment]:
    """What was sent to the worker so far."""
    return [message.assign for message in conn.outbox.drain() if message.HasField("assign")]


async def test_a_request_is_claimed_and_its_run_assigned_in_one_transaction(rig: Rig) -> None:
    conn = rig.worker("w1", capacity=2)
    request = await rig.agent()
    rig.begins.clear()
    assert await rig.consume(request) == [request]
    assert rig.begins == ["begin"], "claim, assignment and dedupe row: one transaction"
    row = await rig.row(request)
    assert (row.owner, row.worker_id, row.run_id is not None) == (REPLICA, "w1", True)
    assert row.version == 2, "the assignment is a change of the agent, the claim is not"
    async with rig.db.reader() as session:
        runs = (await session.scalars(select(SessionRow).where(SessionRow.agent_id == row.id))).all()
    assert [r.id for r in runs] == [row.run_id]
    sent = assignments(conn)
    assert [(a.agent_id, a.run_id) for a in sent] == [(row.id, row.run_id)]
    assert conn.free == 1 and (row.id, row.run_id) in conn.owned
    # The request again (Kafka redelivers): handled once.
    assert await rig.consume(request) == [] and assignments(conn) == []


async def test_the_slots_a_batch_takes_count_for_its_later_requests(rig: Rig) -> None:
    conn = rig.worker("w1", capacity=1)
    first, second = await rig.agent(), await rig.agent()
    assert await rig.consume(first, second) == [first, second]
    assert [a.agent_id for a in assignments(conn)] == [first.metadata.agent_id]
    waiting = await rig.row(second)
    assert (waiting.run_id, waiting.owner) == (None, REPLICA)
    assert waiting.pending_reason == "no_free_slot" and waiting.version == 1
    assert conn.free == 0


async def test_a_request_no_worker_can_take_waits_with_its_reason(rig: Rig) -> None:
    request = await rig.agent()
    rig.begins.clear()
    await rig.consume(request)
    assert rig.begins == ["begin"]
    row = await rig.row(request)
    assert (row.owner, row.run_id, row.pending_reason, row.version) == (REPLICA, None, "no_worker", 1)
    # Pending on this replica: once a worker connects, its scheduling pass places it.
    conn = rig.worker("w1", capacity=1)
    rig.coordinator.nudge()
    assert await rig.coordinator._assign(row.id) is True
    assert [a.agent_id for a in assignments(conn)] == [row.id]
    assert (await rig.row(request)).pending_reason is None


async def test_a_request_whose_transaction_fails_sends_nothing_and_frees_the_slot(rig: Rig) -> None:
    conn = rig.worker("w1", capacity=1)
    request = await rig.agent()

    async def fail(session: Any) -> None:
        raise RuntimeError("the database went away before the commit")

    with pytest.raises(RuntimeError):
        await rig.consumer._handle([request], also=fail)
    assert conn.free == 1 and not conn.in_flight and assignments(conn) == []
    row = await rig.row(request)
    assert (row.owner, row.run_id, row.version) == (None, None, 1), "rolled back"
    # Handled again (Kafka redelivers what was not committed): assigned once.
    assert await rig.consume(request) == [request]
    assert [a.agent_id for a in assignments(conn)] == [row.id] and conn.free == 0


async def test_an_agent_with_nothing_to_run_is_refused_in_the_same_transaction(rig: Rig) -> None:
    rig.worker("w1", capacity=1)
    request = await rig.agent(command=())
    rig.begins.clear()
    await rig.consume(request)
    assert rig.begins == ["begin"]
    row = await rig.row(request)
    assert row.lifecycle_state == LifecycleState.FAILED and (row.last_error or "").startswith(
        "nothing to run"
    )
    assert [e.type for e in await outbox_events(rig.db) if e.metadata.agent_id == row.id] == ["agent:error"]


async def test_an_agent_a_live_replica_owns_is_left_to_it(rig: Rig) -> None:
    conn = rig.worker("w1", capacity=1)
    now = utcnow()
    async with rig.db.session() as session:
        session.add(
            ReplicaRow(id="replica-2", address="x", started_at=now, lease_until=now + timedelta(minutes=1))
        )
        session.add(
            ReplicaRow(id="replica-3", address="y", started_at=now, lease_until=now - timedelta(minutes=1))
        )
    theirs, orphan = await rig.agent(owner="replica-2"), await rig.agent(owner="replica-3")
    assert await rig.consume(theirs, orphan) == [orphan]
    assert (await rig.row(theirs)).owner == "replica-2" and (await rig.row(orphan)).owner == REPLICA
    assert [a.agent_id for a in assignments(conn)] == [orphan.metadata.agent_id]


async def test_a_failed_transaction_forgets_only_its_own_requests(rig: Rig) -> None:
    """A dead letter's retry can run a transaction beside the poll loop's: when one fails, the
    other's decisions stand (they are kept per request, not per consumer)."""
    conn = rig.worker("w1", capacity=2)
    kept, failed = await rig.agent(), await rig.agent()
    async with rig.db.session() as session:
        assert await rig.consumer.handle_batch(session, [kept]) == [kept]
    with pytest.raises(RuntimeError):
        async with rig.db.session() as session:
            assert await rig.consumer.handle_batch(session, [failed]) == [failed]
            raise RuntimeError("the commit failed")
    assert conn.free == 0
    rig.consumer.rolled_back([failed])  # as `_handle` does when its transaction fails
    assert (await rig.row(failed)).run_id is None
    assert conn.free == 1 and assignments(conn) == []
    await rig.consumer.after_commit([kept])
    assert [a.agent_id for a in assignments(conn)] == [kept.metadata.agent_id]
