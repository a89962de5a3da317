"""Why an agent cannot be placed on a worker: the reasons, and the scheduler writing them on the
agent's row only when they change (not on every scheduling pass), without bumping its version,
and clearing them when a worker takes the run. SQLite, no servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event

from godel.v1 import agent_pb2
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.logstore import LogStore
from godel_server.agent.models import AgentRow
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.state import AgentStateStore
from godel_server.agent.workers import Placement, WorkerRegistry
from godel_server.runtime.config import load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.publisher import EventPublisher
from tests.fakes.agents import agent_row

REPLICA = "agent-r1"


COMMAND = Placement("command")


def _hello(
    worker_id: str, runtimes: list[str], capacity: int, labels: dict[str, str] | None = None
) -> wpb.WorkerHello:
    return wpb.WorkerHello(worker_id=worker_id, runtimes=runtimes, capacity=capacity, labels=labels)


def test_reasons_say_what_is_missing() -> None:
    registry = WorkerRegistry()
    none = registry.unplaced(COMMAND, REPLICA)
    assert (none.reason, none.message) == (
        agent_pb2.PENDING_REASON_NO_WORKER,
        f"no worker is connected to agent-service replica {REPLICA}",
    )
    registry.add(_hello("w1", ["openai"], 2))
    other = registry.unplaced(COMMAND, REPLICA)
    assert other.reason == agent_pb2.PENDING_REASON_NO_RUNTIME
    assert other.message == "no connected worker hosts the 'command' runtime (they host: openai)"
    full = registry.add(_hello("w2", ["command"], 1))
    full.free = 0
    busy = registry.unplaced(COMMAND, REPLICA)
    assert busy.reason == agent_pb2.PENDING_REASON_NO_FREE_SLOT
    assert registry.pick(COMMAND) is None and registry.pick(Placement("openai")) is not None
    full.free = 1
    assert registry.pick(COMMAND) is full


def test_a_selector_places_only_on_workers_with_every_label() -> None:
    registry = WorkerRegistry()
    registry.add(_hello("py", ["command"], 4, {"language": "python"}))
    go = Placement.of(agent_pb2.AgentConfig(runtime="command", worker_selector={"language": "go"}))
    missing = registry.unplaced(go, REPLICA)
    assert missing.reason == agent_pb2.PENDING_REASON_NO_RUNTIME
    assert missing.message == (
        "no connected worker has the 'command' runtime and labels language=go (py: command language=python)"
    )
    assert registry.pick(go) is None
    gpu = registry.add(_hello("go-gpu", ["command"], 1, {"language": "go", "gpu": "yes"}))
    assert registry.pick(go) is gpu
    assert registry.pick(Placement("command", (("gpu", "yes"), ("language", "python")))) is None
    gpu.free = 0
    assert registry.unplaced(go, REPLICA).message == (
        "every worker that has the 'command' runtime and labels language=go is busy "
        "(1 worker(s), 1 slot(s) in all)"
    )


async def _agent(db: Database) -> str:
    row = agent_row(owner=REPLICA)
    async with db.session() as session:
        session.add(row)
    return row.id


async def _row(db: Database, agent_id: str) -> AgentRow:
    async with db.reader() as session:
        row = await session.get(AgentRow, agent_id)
    assert row is not None
    return row


async def test_the_reason_is_written_when_it_changes_and_cleared_on_placement(
    agent_db: Database, tmp_path: Path
) -> None:
    settings = load_settings("agent", {"GODEL_HOME": str(tmp_path), "GODEL_INSTANCE_ID": REPLICA})
    registry = WorkerRegistry()
    coordinator = RunCoordinator(
        settings, AgentStateStore(agent_db, EventPublisher(None), REPLICA), LogStore(agent_db), registry
    )
    agent_id = await _agent(agent_db)
    updates: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE AGENTS"):
            updates.append(statement)

    event.listen(agent_db.engine.sync_engine, "before_cursor_execute", count)

    for _ in range(5):  # five scheduling passes with no worker: one write
        assert await coordinator._assign(agent_id) is False
    row = await _row(agent_db, agent_id)
    assert (row.pending_reason, row.version) == ("no_worker", 1)
    assert len(updates) == 1

    registry.add(_hello("w1", ["openai"], 1))
    for _ in range(3):
        assert await coordinator._assign(agent_id) is False
    row = await _row(agent_db, agent_id)
    assert row.pending_reason == "no_runtime" and "'command' runtime" in (row.pending_message or "")
    assert len(updates) == 2 and row.version == 1

    registry.add(_hello("w2", ["command"], 1))
    assert await coordinator._assign(agent_id) is True
    row = await _row(agent_db, agent_id)
    assert (row.pending_reason, row.pending_message, row.worker_id) == (None, None, "w2")
    assert row.version == 2  # the assignment itself is a change of the agent
