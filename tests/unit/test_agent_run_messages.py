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
from godel_server.agent.run_messages import superseded
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


def logs(run: str) -> wpb.ConnectRequest:
    return wpb.ConnectRequest(logs=wpb.RunLogs(run_id=run, agent_id=f"agent-{run}"))


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
        update("e", RUNNING, 3),  # 11: RUNNING does not make READY's work redundant after it
        update("e", READY, 4),  # 12
        wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat()),  # 13
    ]
    assert superseded(messages) == {0, 2}
    assert superseded([]) == set()


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
        logs(s),
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
        # The quick run went to RUNNING in one transaction; the slow one's READY had a log line
        # of its run between it and its STARTING, so both of its updates were applied.
        assert applied == [(slow.id, STARTING), (slow.id, READY), (quick.id, RUNNING)]
        assert [(a.run_id, a.seq) for a in worker.acks] == [(s, 1), (s, 2), (q, 3)]
        assert quick.lifecycle_state == LifecycleState.EXECUTING and quick.status == AgentStatus.RUNNING
        assert quick.worktree_path == "/wt/q" and db.sessions[q].status == SessionStatus.ACTIVE
        assert slow.lifecycle_state == LifecycleState.SPAWNING
        triggers = [(t.agent_id, t.trigger) for t in db.transitions]
        assert triggers == [
            (slow.id, "worktree_created"),
            (quick.id, "worktree_created"),
            (quick.id, "session_started"),
        ]
        assert q not in worker.conn.unapplied and s not in worker.conn.unapplied
    finally:
        applier.cancel()
