"""The agent service's write path without gRPC: a new agent is one INSERT (runtime/rows.py) that
stores what an ORM flush stored, its events go to the outbox in the same transaction, a kill
writes the agent row once, with its history row and `agent:kill` event, the outbox relay is woken
by commits that published, and the per-user cap counts live agents through an index. SQLite, no
servers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Integer, event, literal_column, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from godel.v1 import agent_events_pb2, agent_service_pb2
from godel_server.agent.mapping import agent_to_proto, new_agent_row
from godel_server.agent.models import AgentRow, AgentTransitionRow
from godel_server.agent.repository import AgentRepository
from godel_server.agent.state import AgentStateStore
from godel_server.runtime.context import Caller, caller_var
from godel_server.runtime.db import Database
from godel_server.runtime.events import event_data, new_event, utcnow
from godel_server.runtime.ownership import Owner
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.rows import column_values, insert_row
from godel_server.runtime.statuses import LifecycleState
from tests.unit.conftest import outbox_events

CALLER = Caller(key_id="k1", user_id="alice", role="developer")


def _row(task: str = "t", request_id: str = "") -> AgentRow:
    request = agent_service_pb2.CreateAgentRequest(task=task, label="l", request_id=request_id)
    return new_agent_row(request, model="m", repo="/r", caller=CALLER, owner=Owner("alice", None))


class Statements:
    """The SQL statements a database runs while this is listening."""

    def __init__(self, db: Database) -> None:
        self.seen: list[str] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(" ".join(statement.split()[:3]).upper())


def test_column_values_fill_in_the_defaults_a_flush_would() -> None:
    row = AgentRow(id="a1", model="m", task="t", spawned_at=None, updated_at=None)
    values = column_values(row)
    assert values["prompt_tokens"] == 0 and row.prompt_tokens == 0
    assert values["config"] == {} and row.config == {}
    assert values["metadata"] == {} and row.meta == {}  # by column name, not attribute name
    assert values["status"] == "pending" and values["version"] == 1
    assert values["team_id"] is None  # nullable without a default: stored as NULL
    transition = AgentTransitionRow(agent_id="a1", version=2, trigger="x")
    assert "id" not in column_values(transition)  # the database numbers it


def test_a_sql_expression_default_is_left_to_the_insert() -> None:
    class Base(DeclarativeBase):
        pass

    class Stamped(Base):
        __tablename__ = "stamped"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        at: Mapped[int] = mapped_column(Integer, default=literal_column("42"))

    assert column_values(Stamped(id=1)) == {"id": 1}


async def test_a_row_inserted_without_a_flush_reads_back_like_a_flushed_one(agent_db: Database) -> None:
    core, orm = _row("core"), _row("orm")
    async with agent_db.session() as session:
        await insert_row(session, core)
        assert core not in session
        session.add(orm)
    async with agent_db.reader() as session:
        stored = {r.task: r for r in (await session.scalars(select(AgentRow))).all()}
    skip = {"id", "task", "spawned_at", "updated_at"}
    as_stored = {k: v for k, v in column_values(stored["core"]).items() if k not in skip}
    assert as_stored == {k: v for k, v in column_values(stored["orm"]).items() if k not in skip}
    assert agent_to_proto(stored["core"]).task == "core" and stored["core"].id == core.id


async def test_a_create_is_two_inserts_and_a_kill_writes_the_row_once(agent_db: Database) -> None:
    caller_var.set(CALLER)
    store = AgentStateStore(agent_db, EventPublisher(None), "r1")
    statements = Statements(agent_db)
    row = await store.create(_row())
    assert statements.seen == ["INSERT INTO AGENTS", "INSERT INTO OUTBOX"]
    statements.seen.clear()

    async def kill(session: Any, agent: AgentRow) -> None:
        await store.apply(session, agent, "kill_command", reason="enough")
        agent.completed_at = utcnow()  # a change after the transition, as KillAgent makes

    killed, _ = await store.update(row.id, kill)
    assert statements.seen == [
        "SELECT AGENTS.ID, AGENTS.REQUEST_ID,",
        "INSERT INTO AGENT_TRANSITIONS",
        "UPDATE AGENTS SET",
        "INSERT INTO OUTBOX",  # a transaction's events go at its commit (runtime/outbox.py)
    ]
    assert killed.version == 2 and killed.lifecycle_state == LifecycleState.KILLED
    async with agent_db.reader() as session:
        stored = await session.get(AgentRow, row.id)
        history = (await session.scalars(select(AgentTransitionRow))).all()
    assert stored is not None and stored.version == 2 and stored.lifecycle_state == LifecycleState.KILLED
    assert stored.completed_at is not None
    assert [(h.version, h.trigger, h.reason, h.actor) for h in history] == [
        (2, "kill_command", "enough", "k1")
    ]
    events = await outbox_events(agent_db)
    assert [e.type for e in events] == ["agent:spawn", "run:requested", "agent:kill"]
    kill_data = event_data(events[-1])
    assert isinstance(kill_data, agent_events_pb2.AgentKilled)
    assert kill_data.transition.version == 2 and kill_data.transition.reason == "enough"


class Relay:
    def __init__(self) -> None:
        self.woken = 0

    def notify(self) -> None:
        self.woken += 1


async def test_the_relay_is_woken_by_a_commit_that_published_only(agent_db: Database) -> None:
    relay = Relay()
    publisher = EventPublisher(relay)  # type: ignore[arg-type]

    def killed() -> Any:
        return new_event(agent_events_pb2.AgentKilled(), partition_key="a1", component="c", instance="i")

    async with agent_db.session() as session:
        await publisher.publish(session, [killed()])
        await publisher.publish(session, [killed()])
        assert relay.woken == 0, "not before the commit"
    assert relay.woken == 1
    with pytest.raises(RuntimeError):
        async with agent_db.session() as session:
            await publisher.publish(session, [killed()])
            raise RuntimeError("the caller fails")
    async with agent_db.session() as session:
        await session.execute(select(AgentRow.id))
    assert relay.woken == 1, "a rolled back or an event-less transaction wakes nothing"
    assert len(await outbox_events(agent_db)) == 2


async def test_the_live_cap_counts_through_an_index_of_live_states(agent_db: Database) -> None:
    """CreateAgent's per-user cap reads the user's live agents only, not every agent they had."""
    async with agent_db.session() as session:
        for i, (user, state) in enumerate(
            [("alice", "killed")] * 3
            + [("alice", "executing"), ("alice", "initializing"), ("bob", "waiting")]
        ):
            row = _row(f"t{i}")
            row.user_id, row.lifecycle_state = user, LifecycleState(state)
            await insert_row(session, row)
    async with agent_db.reader() as session:
        assert await AgentRepository(session).count_live("alice") == 2
        stmt = AgentRepository.live_count_query("alice")
        sql = str(stmt.compile(agent_db.engine, compile_kwargs={"literal_binds": True}))
        plan = " ".join(
            str(step) for step in (await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
        )
    assert "idx_agents_user_lifecycle" in plan, plan
