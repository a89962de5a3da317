"""A new run's STARTING and WORKTREE_READY updates that wait in the stream's backlog with its
RUNNING are not applied on their own (agent/run_messages.py): RUNNING does what they do, in one
transaction instead of three, and its acknowledgement covers them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.run_messages import Coalescer
from godel_server.agent.worker_servicer import WorkerServicer
from godel_server.runtime.statuses import AgentStatus, LifecycleState, SessionStatus
from tests.fakes.agents import FakeWorker, coordinator, new_agent
from tests.waits import wait_for_async

STARTING, READY, RUNNING = wpb.RUN_STATE_STARTING, wpb.RUN_STATE_WORKTREE_READY, wpb.RUN_STATE_RUNNING


def update(
    run: str, state: wpb.RunState.ValueType, seq: int, agent: str = "", **fields: Any
) -> wpb.ConnectRequest:
    return wpb.ConnectRequest(
        update=wpb.RunUpdate(run_id=run, agent_id=agent or f"agent-{run}", state=state, seq=seq, **fields)
    )


def state(agent: Any) -> LifecycleState:
    """The agent's state now (a function: mypy would keep what an earlier assert narrowed)."""
    return LifecycleState(agent.lifecycle_state)


def logs(run: str, agent: str = "") -> wpb.ConnectRequest:
    return wpb.ConnectRequest(logs=wpb.RunLogs(run_id=run, agent_id=agent or f"agent-{run}"))


def test_an_update_is_redundant_only_when_the_runs_next_message_does_all_it_does() -> None:
    messages = [
        update("a", STARTING, 1),  # 0: a's next is READY
        update("b", STARTING, 1),  # 1: b's next is logs
        update("a", READY, 2),  # 2: a's next is RUNNING
        logs("b"),  # 3
        update("b", READY, 2),  # 4: b's next is a final state
        update("a", RUNNING, 3),  # 5
        update("b", wpb.RUN_STATE_FAILED, 3),  # 6
        update("c", READY, 2),  # 7: c's RUNNING is of another agent
        update("c", RUNNING, 3, agent="someone-else"),  # 8
        update("d", READY, 5),  # 9: d's RUNNING comes earlier in its sequence
        update("d", RUNNING, 4),  # 10
        update("e", RUNNING, 3),  # 11
        update("e", READY, 4),  # 12: held, nothing came after it yet
        wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat()),  # 13
    ]
    held = Coalescer(linger=0.1)
    taken = held.take(messages, now=1000.0)
    assert taken.redundant == [messages[0], messages[2]]
    # b's READY waits for b's next message; a's RUNNING does not wait for it.
    assert taken.ready == [messages[i] for i in (1, 3, 5, 4, 6, 7, 8, 9, 10, 11, 13)]
    assert held.deadline() == 1000.1
    # e's READY is applied when its time is up, or before the next message of its run.
    assert held.take([], now=1000.05).ready == []
    assert held.take([], now=1000.1).ready == [messages[12]] and held.deadline() is None
    held.take([update("f", READY, 2)], now=2000.0)
    usage = wpb.ConnectRequest(usage=wpb.RunUsage(run_id="f", agent_id="agent-f", seq=3))
    assert held.take([usage], now=2000.01).ready == [update("f", READY, 2), usage]


def test_a_held_update_does_not_hold_up_other_runs() -> None:
    held = Coalescer(linger=0.1)
    assert held.take([update("a", READY, 2)], now=10.0).ready == []
    other = [update("b", wpb.RUN_STATE_SUCCEEDED, 9), logs("c")]
    assert held.take(other, now=10.01).ready == other
    taken = held.take([update("a", RUNNING, 3)], now=10.05)
    assert taken.ready == [update("a", RUNNING, 3)] and taken.redundant == [update("a", READY, 2)]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, FakeWorker, WorkerServicer]]:
    coord, db, registry = coordinator(tmp_path)
    worker = FakeWorker(registry, "w1", capacity=4)
    yield coord, db, worker, WorkerServicer(coord, registry, run_lease_seconds=10)
    await worker.stop()
    await coord.stop()


async def test_a_runs_first_updates_waiting_with_its_running_are_applied_as_one(
    served: tuple[Any, Any, FakeWorker, WorkerServicer], monkeypatch: pytest.MonkeyPatch
) -> None:
    coord, db, worker, servicer = served
    quick, slow = new_agent(db), new_agent(db)
    for agent in (quick, slow):
        assert await coord._assign(agent.id)
    applied: list[tuple[str, int]] = []
    on_update = coord.on_update

    async def counted(conn: Any, upd: wpb.RunUpdate) -> None:
        applied.append((upd.agent_id, upd.state))
        await on_update(conn, upd)

    monkeypatch.setattr(coord, "on_update", counted)
    q, s = quick.run_id or "", slow.run_id or ""
    waiting = [
        update(q, STARTING, 1, quick.id),
        update(s, STARTING, 1, slow.id),
        update(q, READY, 2, quick.id, worktree="/wt/q"),
        logs(s, slow.id),
        update(s, READY, 2, slow.id, worktree="/wt/s"),
        update(q, RUNNING, 3, quick.id, worktree="/wt/q"),
    ]
    backlog: asyncio.Queue[wpb.ConnectRequest] = asyncio.Queue()
    for message in waiting:
        if message.HasField("update"):
            worker.conn.unapplied[message.update.run_id] += 1
        backlog.put_nowait(message)
    applier = asyncio.create_task(servicer._apply(worker.conn, backlog))
    try:
        await wait_for_async(lambda: len(worker.acks) >= 3, 10, "the acknowledgements")
        # The quick run went to RUNNING in one transaction. The slow one had a log line between
        # its STARTING and its READY, so both are applied: STARTING before the log line, READY
        # once its wait is over (nothing came after it), after the quick run's RUNNING.
        assert applied == [(slow.id, STARTING), (quick.id, RUNNING), (slow.id, READY)]
        assert [(a.run_id, a.seq) for a in worker.acks] == [(s, 1), (q, 3), (s, 2)]
        assert quick.lifecycle_state == LifecycleState.EXECUTING and quick.status == AgentStatus.RUNNING
        assert quick.worktree_path == "/wt/q" and db.sessions[q].status == SessionStatus.ACTIVE
        assert slow.lifecycle_state == LifecycleState.SPAWNING
        triggers = [(t.agent_id, t.trigger) for t in db.transitions]
        assert triggers == [
            (quick.id, "worktree_created"),
            (quick.id, "session_started"),
            (slow.id, "worktree_created"),
        ]
        assert q not in worker.conn.unapplied and s not in worker.conn.unapplied
        # The slow run's RUNNING comes a moment later, on its own: applied as it comes.
        worker.conn.unapplied[s] += 1
        backlog.put_nowait(update(s, RUNNING, 3, slow.id, worktree="/wt/s"))
        await wait_for_async(lambda: len(worker.acks) >= 4, 10, "the slow run's RUNNING")
        assert state(slow) == LifecycleState.EXECUTING and applied[-1] == (slow.id, RUNNING)
    finally:
        applier.cancel()


async def test_a_worktree_ready_is_applied_after_its_wait_when_nothing_follows(
    served: tuple[Any, Any, FakeWorker, WorkerServicer],
) -> None:
    coord, db, worker, servicer = served
    agent = new_agent(db)
    assert await coord._assign(agent.id)
    run_id = agent.run_id or ""
    backlog: asyncio.Queue[wpb.ConnectRequest] = asyncio.Queue()
    applier = asyncio.create_task(servicer._apply(worker.conn, backlog))
    try:
        worker.conn.unapplied[run_id] += 1
        backlog.put_nowait(update(run_id, READY, 2, agent.id, worktree="/wt/a"))
        await wait_for_async(lambda: len(worker.acks) >= 1, 10, "the WORKTREE_READY's acknowledgement")
        assert worker.acks[0].seq == 2 and agent.lifecycle_state == LifecycleState.SPAWNING
        assert run_id not in worker.conn.unapplied
    finally:
        applier.cancel()
